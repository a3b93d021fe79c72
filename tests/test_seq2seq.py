"""English-French data, the encoder-decoder, masked cross-entropy, BLEU and decoding (D2L §9.5-9.8)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_real_data
from torch import nn

from divekit.data.text import Vocab
from divekit.data.translation import (
    build_array,
    load_translation,
    preprocess,
    tokenize_pairs,
    truncate_pad,
)
from divekit.decoding import (
    beam_search,
    exhaustive_search,
    greedy_search,
    sequence_score,
)
from divekit.metrics.bleu import bleu, corpus_bleu
from divekit.data.batch import SequencePair
from divekit.models.registry import create_model
from divekit.models.seq2seq import Decoder, Encoder, EncoderDecoder, translate


def seq2seq_model(src_vocab_size, tgt_vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, impl="fast"):
    return create_model("seq2seq", impl, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                        embed_size=embed_size, num_hiddens=num_hiddens, num_layers=num_layers, dropout=dropout)


def pairs(X, Y, pad):
    """The batch the data gives the task: tokens and valid lengths (here: the non-padding count)."""
    return SequencePair(X, (X != pad).sum(dim=1), Y, (Y != pad).sum(dim=1))
from divekit.ops import fast, scratch
from divekit.train.lm import Seq2SeqTask

# -- data ----------------------------------------------------------------------------------------


def test_preprocess_spaces_punctuation_and_non_breaking_spaces():
    assert preprocess("Go.\tVa !") == "go .\tva !"
    assert preprocess("Help!\tÀ l'aide\u202f!") == "help !\tà l'aide !"
    assert preprocess("Who?\tQui\xa0?") == "who ?\tqui ?"
    assert preprocess("Hi, you.") == "hi , you ."
    assert preprocess("!x") == "!x"  # nothing to put a space after at the start


def test_tokenize_truncate_pad_and_valid_lengths():
    source, target = tokenize_pairs("go .\tva !\tCC-BY\nhi .\tsalut !\nbroken line\n", num_examples=5)
    assert source == [["go", "."], ["hi", "."]] and target == [["va", "!"], ["salut", "!"]]
    assert tokenize_pairs("a\tb\nc\td\n", num_examples=1) == ([["a"]], [["b"]])
    assert truncate_pad([5, 6, 7], 5, 0) == [5, 6, 7, 0, 0] and truncate_pad([5, 6, 7], 2, 0) == [5, 6]
    vocab = Vocab(source * 2, min_freq=2, reserved_tokens=("<pad>", "<bos>", "<eos>"))
    array, valid = build_array(source + [["go", "go", "go", "go"]], vocab, 4)
    pad, eos = vocab["<pad>"], vocab["<eos>"]
    assert array[0].tolist() == [vocab["go"], vocab["."], eos, pad] and valid.tolist() == [3, 3, 4]
    assert eos not in array[2].tolist()  # truncation may cut <eos> off, as in the book


def d2l_tokenize_nmt(text, num_examples=None):
    """d2l 0.17.6's ``tokenize_nmt`` (D2L §9.5.2), as the package has it: the reference for the book's data."""
    source, target = [], []
    for i, line in enumerate(text.split('\n')):
        if num_examples and i > num_examples:
            break
        parts = line.split('\t')
        if len(parts) == 2:
            source.append(parts[0].split(' '))
            target.append(parts[1].split(' '))
    return source, target


@needs_real_data(["fra-eng"])
def test_the_default_data_is_the_books_601_pairs_of_load_data_nmt_600():
    from divekit.data.translation import read_fra_eng

    book_source, book_target = d2l_tokenize_nmt(preprocess(read_fra_eng()), num_examples=600)
    assert len(book_source) == 601  # d2l's loop stops only after line 600
    data = load_translation(num_steps=10)
    assert len(data.pairs) == 601 and data.held_out is None
    book_vocab = Vocab(book_source, min_freq=2, reserved_tokens=("<pad>", "<bos>", "<eos>"))
    assert data.src_vocab.idx_to_token == book_vocab.idx_to_token
    X, _ = build_array(book_source, book_vocab, 10)
    torch.testing.assert_close(data.pairs.X, X)
    assert data.tgt_vocab.idx_to_token == Vocab(book_target, min_freq=2,
                                                reserved_tokens=("<pad>", "<bos>", "<eos>")).idx_to_token


@needs_real_data(["fra-eng"])
def test_held_out_sentences_are_unseen_in_training_and_keep_all_their_references():
    data = load_translation(num_examples=3000, num_steps=10, held_out=0.1)
    train = {" ".join(data.src_vocab.to_tokens(row[:n - 1])) for row, n in zip(data.pairs.X, data.pairs.X_valid_len)}
    held = dict(data.held_out_references)
    assert not set(held) & train and len(held) > 100
    assert len(data.pairs) + len(data.held_out) == 3000
    assert sum(len(refs) for refs in held.values()) == len(data.held_out)
    assert any(len(refs) > 1 for refs in held.values())  # Tatoeba gives several translations of one sentence
    again = load_translation(num_examples=3000, num_steps=10, held_out=0.1)  # a fixed choice, whatever the run
    assert again.held_out_references == data.held_out_references
    trained = {token for row in data.pairs.X for token in data.src_vocab.to_tokens(row)}
    assert trained == set(data.src_vocab.idx_to_token) - {"<bos>"}  # the vocabulary is the training pairs' own
    with pytest.raises(ValueError, match=r"held_out must be a share in \[0, 1\), got 1.0"):
        load_translation(num_examples=10, held_out=1.0)


@needs_real_data(["fra-eng"])
def test_load_translation_matches_the_book():
    data = load_translation(num_examples=600, num_steps=8)
    assert data.pairs.X.shape == data.pairs.Y.shape == (600, 8)
    src, tgt = data.src_vocab, data.tgt_vocab
    assert src.idx_to_token[:4] == tgt.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert src.to_tokens(data.pairs.X[0]) == ["go", ".", "<eos>", "<pad>", "<pad>", "<pad>", "<pad>", "<pad>"]
    assert tgt.to_tokens(data.pairs.Y[0][:3]) == ["va", "!", "<eos>"]
    assert data.pairs.X_valid_len[0] == 3 and data.pairs.Y_valid_len[0] == 3
    assert all(freq >= 2 for token, freq in src.token_freqs if token in src.token_to_idx)


# -- masked cross-entropy --------------------------------------------------------------------------


def test_sequence_mask():
    assert scratch.sequence_mask(torch.tensor([1, 3, 0]), 3).tolist() == [[True, False, False], [True, True, True],
                                                                           [False, False, False]]


@pytest.mark.parametrize("ops", [scratch, fast])
def test_masked_cross_entropy_ignores_padding_and_averages_over_real_tokens(ops):
    torch.manual_seed(0)
    B, T, V = 3, 5, 7
    logits, Y, valid = torch.randn(B, T, V, dtype=torch.float64), torch.randint(0, V, (B, T)), torch.tensor([5, 2, 1])
    losses = ops.masked_cross_entropy(logits, Y, valid)
    changed = logits.clone()
    changed[1, 2:] += 100 * torch.randn(T - 2, V, dtype=torch.float64)  # only padding positions change
    torch.testing.assert_close(ops.masked_cross_entropy(changed, Y, valid), losses)
    real = [F.cross_entropy(logits[b, :n], Y[b, :n], reduction="sum") for b, n in enumerate(valid.tolist())]
    torch.testing.assert_close(losses.sum() / valid.sum(), sum(real) / 8)  # mean over the 8 real tokens
    d2l_bug = losses.mean(dim=1).mean()  # d2l's .mean(dim=1) also divides by the padding (d2l-en#2076)
    assert not torch.allclose(d2l_bug, losses.sum() / valid.sum())
    x = logits.clone().requires_grad_()
    ops.masked_cross_entropy(x, Y, valid).sum().backward()
    assert float(x.grad[1, 2:].abs().max()) == 0.0 and float(x.grad[2, 1:].abs().max()) == 0.0


def test_scratch_and_fast_masked_cross_entropy_agree_with_gradients():
    torch.manual_seed(1)
    logits, Y, valid = torch.randn(2, 4, 6, dtype=torch.float64), torch.randint(0, 6, (2, 4)), torch.tensor([4, 2])
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    la, lb = scratch.masked_cross_entropy(a, Y, valid), fast.masked_cross_entropy(b, Y, valid)
    torch.testing.assert_close(la, lb)
    la.sum().backward(), lb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


# -- the model and its task ----------------------------------------------------------------------


def test_interfaces_say_what_is_missing():
    with pytest.raises(NotImplementedError, match="forward"):
        Encoder()(torch.zeros(1, 1))
    with pytest.raises(NotImplementedError, match="init_state"):
        Decoder().init_state(None)


def test_seq2seq_shapes_and_scratch_fast_twins():
    torch.manual_seed(0)
    s = seq2seq_model(10, 12, 8, 16, 2, dropout=0.1, impl="scratch")
    f = seq2seq_model(10, 12, 8, 16, 2, dropout=0.1, impl="fast")
    f.load_state_dict(s.state_dict())
    s.eval(), f.eval()
    X, dec_X = torch.randint(0, 10, (4, 7)), torch.randint(0, 12, (4, 5))
    s_logits, (context, H) = s(X, dec_X)
    f_logits, _ = f(X, dec_X)
    assert s_logits.shape == (4, 5, 12) and context.shape == (4, 16) and H.shape == (2, 4, 16)
    torch.testing.assert_close(s_logits, f_logits, atol=1e-5, rtol=1e-4)
    _, enc_state = s.encoder(X)
    torch.testing.assert_close(context, enc_state[-1])  # the context stays the encoder's


class Recorder(EncoderDecoder):
    def __init__(self, V):
        super().__init__(Encoder(), Decoder())
        self.logits = nn.Parameter(torch.randn(V))

    def forward(self, enc_X, dec_X, *args):
        self.seen = (enc_X, dec_X, *args)
        return self.logits.expand(*dec_X.shape, -1), None


def test_seq2seq_task_uses_teacher_forcing_and_a_per_token_loss():
    pad, bos, V = 1, 2, 6
    X = torch.tensor([[4, 3, 1, 1], [5, 5, 5, 3]])
    Y = torch.tensor([[4, 5, 3, 1], [3, 1, 1, 1]])
    model, task = Recorder(V), Seq2SeqTask(fast.masked_cross_entropy, bos=bos)
    out = task.step(model, pairs(X, Y, pad), True)
    _, dec_X, X_valid = model.seen  # up to the longest target (3 of 4 positions): see the next test
    assert dec_X.tolist() == [[bos, 4, 5], [bos, 3, 1]] and X_valid.tolist() == [2, 4]
    real = [F.cross_entropy(model.logits[None], Y[b, t:t + 1]) for b, t in [(0, 0), (0, 1), (0, 2), (1, 0)]]
    torch.testing.assert_close(out.loss, sum(real) / 4)
    totals = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.sums.items()}
    summary = task.summarize(totals)
    assert summary["loss"] == pytest.approx(out.loss.item()) and summary["loss_d2l"] == pytest.approx(out.loss.item() / 4)


@pytest.mark.parametrize("name", ["seq2seq", "bahdanau", "transformer"])
@pytest.mark.parametrize("reduction", ["book", "token_mean"])
def test_leaving_out_the_positions_after_the_longest_target_changes_no_loss_and_no_gradient(name, reduction):
    """The task decodes only up to the batch's longest target; every decoder is causal, so the loss
    and the gradients equal those over all T positions (computed here by hand)."""
    torch.manual_seed(3)
    pad, bos, V = 1, 2, 9
    sizes = dict(src_vocab_size=V, tgt_vocab_size=V, num_hiddens=8, num_layers=2, dropout=0.0)
    model = create_model(name, "fast", **sizes, **({"num_heads": 2} if name == "transformer" else {"embed_size": 6}))
    X = torch.tensor([[4, 3, 5, 1, 1, 1], [5, 5, 5, 3, 6, 1], [3, 1, 1, 1, 1, 1]])
    Y = torch.tensor([[4, 5, 3, 1, 1, 1], [3, 1, 1, 1, 1, 1], [5, 7, 4, 3, 1, 1]])  # longest 4 of T = 6
    batch = pairs(X, Y, pad)
    out = Seq2SeqTask(fast.masked_cross_entropy, bos=bos, reduction=reduction).step(model, batch, True)
    grads = torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
    dec_X = torch.cat([torch.full_like(Y[:, :1], bos), Y[:, :-1]], dim=1)  # all T positions
    logits, _ = model(X, dec_X, batch.X_valid_len)  # (B, T, V)
    per_token = F.cross_entropy(logits.permute(0, 2, 1), Y, reduction="none") * (Y != pad)
    expected = per_token.sum() / (Y.shape[1] if reduction == "book" else (Y != pad).sum())
    torch.testing.assert_close(out.loss, expected)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want)
    assert float(out.sums["steps"]) == 6 * 8  # d2l's printed loss still divides by T = 6


def test_seq2seq_book_reduction_is_d2ls_masked_loss_summed_over_the_batch():
    """d2l's MaskedSoftmaxCELoss: unmasked per-token losses, zeroed on padding, mean over all T
    positions per sentence; train_seq2seq sums that over the batch. Metrics stay per real token."""
    pad, bos, V = 1, 2, 6
    X = torch.tensor([[4, 3, 1, 1], [5, 5, 5, 3], [3, 1, 1, 1]])
    Y = torch.tensor([[4, 5, 3, 1], [3, 1, 1, 1], [5, 5, 4, 3]])
    model = Recorder(V)
    book = Seq2SeqTask(fast.masked_cross_entropy, bos=bos, reduction="book").step(model, pairs(X, Y, pad), True)
    logits = model.logits.expand(3, 4, -1)
    per_token = F.cross_entropy(logits.permute(0, 2, 1), Y, reduction="none")  # (B, T)
    d2l_loss = (per_token * (Y != pad)).mean(dim=1).sum()
    torch.testing.assert_close(book.loss, d2l_loss)
    mean = Seq2SeqTask(fast.masked_cross_entropy, bos=bos).step(model, pairs(X, Y, pad), True)
    torch.testing.assert_close(book.loss, mean.loss * 8 / 4)  # 8 real tokens, T = 4
    assert float(book.sums["loss"]) == pytest.approx(float(mean.sums["loss"]))
    with pytest.raises(ValueError, match="reduction must be 'book' or 'token_mean'"):
        Seq2SeqTask(fast.masked_cross_entropy, bos=bos, reduction="mean")


def test_seq2seq_learns_to_copy_and_translate_returns_it():
    torch.manual_seed(0)
    vocab = Vocab([list("abcd")], reserved_tokens=("<pad>", "<bos>", "<eos>"))
    model = seq2seq_model(len(vocab), len(vocab), 8, 32, 1)
    task = Seq2SeqTask(fast.masked_cross_entropy, bos=vocab["<bos>"])
    sentences = [" ".join(p) for p in itertools.product("abcd", repeat=3)]
    X, valid_len = build_array([s.split() for s in sentences], vocab, 5)
    optimizer = torch.optim.Adam(model.parameters(), 0.02)
    for _ in range(150):
        loss = task.step(model, SequencePair(X, valid_len, X, valid_len), True).loss
        optimizer.zero_grad(), loss.backward(), optimizer.step()
    assert loss.item() < 0.1
    assert translate(model, "b a d", vocab, vocab, 5) == "b a d"
    assert translate(model, "c c a", vocab, vocab, 5, beam_size=3) == "c c a"


def test_a_typed_sentence_is_as_long_as_its_words_and_eos_even_with_a_literal_pad():
    from divekit.models.seq2seq import encode_source

    vocab = Vocab([["go", "."]], reserved_tokens=("<pad>", "<bos>", "<eos>"))
    X, valid = encode_source("<pad> go .", vocab, 6)  # d2l's predict_seq2seq: len(src_tokens)
    assert X.tolist() == [[vocab["<pad>"], vocab["go"], vocab["."], vocab["<eos>"], vocab["<pad>"], vocab["<pad>"]]]
    assert valid.tolist() == [4]
    assert encode_source("go . go . go .", vocab, 4)[1].tolist() == [4]  # cut to num_steps


# -- BLEU ------------------------------------------------------------------------------------------


def test_bleu_on_the_books_examples_and_hand_computed_cases():
    assert bleu("va !", "va !", k=2) == 1.0
    # len 4 = 4 so no penalty; p1 = 3/4, p2 = 1/3: (3/4)^(1/2) (1/3)^(1/4)
    assert bleu("il est riche .", "il est calme .", k=2) == pytest.approx(0.658, abs=5e-4)
    assert bleu("il est riche .", "il est calme .", k=2) == pytest.approx(math.sqrt(3 / 4) * (1 / 3) ** 0.25)
    # p1 = 2/5, p2 = 1/4; the prediction is longer, so no penalty
    assert bleu("je suis en retard ?", "je suis chez moi .", k=2) == pytest.approx(0.447, abs=5e-4)
    # too short: exp(1 - 5/2), both precisions 1
    assert bleu("je suis", "je suis chez moi .", k=2) == pytest.approx(math.exp(-1.5))
    # clipped counts: "le" occurs once in the label, so 1 of 3 unigrams match; no bigram matches
    assert bleu("le le le", "le chat", k=1) == pytest.approx((1 / 3) ** 0.5)
    assert bleu("le le le", "le chat", k=2) == 0.0
    assert bleu("va", "va !", k=2) == 0.0  # no bigram to compare: 0 (the book divides by zero)
    with pytest.raises(ValueError, match="at least 1"):
        bleu("a", "a", k=0)


def test_corpus_bleu_hand_computed():
    pred, ref = ["a b c d e"], ["a b c d f"]
    # p1 = 4/5, p2 = 3/4, p3 = 2/3, p4 = 1/2, same length
    assert corpus_bleu(pred, ref) == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    assert corpus_bleu(["a b"], ["a b c"]) == 0.0  # no 3-grams at all
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        corpus_bleu(["a", "b"], ["a"])


def test_corpus_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    predictions = ["the cat sat on the mat", "il est calme et il dort .", "je suis chez moi ce soir .", "a b c d e f g"]
    references = ["the cat is on the mat", "il est calme .", "je suis chez moi .", "a b c d e f g h i"]
    ours = corpus_bleu(predictions, references)
    theirs = sacrebleu.corpus_bleu(predictions, [references], tokenize="none", smooth_method="none").score / 100
    assert ours == pytest.approx(theirs, rel=1e-9) and 0 < ours < 1


def test_corpus_bleu_with_several_references_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    predictions = ["il est calme et il dort .", "je suis chez moi ce soir .", "va !", "le le le chat est là"]
    references = [["il est calme .", "il est tranquille et il dort ."], ["je suis à la maison ."],
                  ["va !", "bouge !", "file !"], ["le chat est là .", "le chat le chat est là"]]
    ours = corpus_bleu(predictions, references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(3)]  # sacrebleu's layout
    theirs = sacrebleu.corpus_bleu(predictions, streams, tokenize="none", smooth_method="none").score / 100
    assert ours == pytest.approx(theirs, rel=1e-9) and 0 < ours < 1
    # a second reference can only raise the counts: BLEU with it is at least BLEU with the first alone
    assert ours > corpus_bleu(predictions, [refs[0] for refs in references])
    # references as far shorter as longer than the prediction (3 and 5 tokens for 4): the shorter one is the
    # brevity penalty's length, as sacreBLEU takes it (the longer would give exp(1 - 5/4))
    tie = (["le chat est là"], [["le chat dort", "le chat est là ."]])
    theirs = sacrebleu.corpus_bleu(tie[0], [[r[0] for r in tie[1]], [r[1] for r in tie[1]]], tokenize="none",
                                   smooth_method="none").score / 100
    assert corpus_bleu(*tie) == pytest.approx(theirs) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no reference for the prediction 'va !'"):
        corpus_bleu(["va !"], [[]])


# -- decoding --------------------------------------------------------------------------------------

EOS, BOS = 0, 9
# D2L §9.8's example (Fig. 9.8.1-9.8.2): greedy picks A B C <eos> with P = 0.5 * 0.4 * 0.4 * 0.6 = 0.048,
# but A C B <eos> has 0.5 * 0.3 * 0.6 * 0.6 = 0.054. Tokens: <eos>=0, A=1, B=2, C=3.
TABLE = {(): [0.1, 0.5, 0.2, 0.2], (1,): [0.2, 0.1, 0.4, 0.3], (1, 2): [0.2, 0.2, 0.2, 0.4], (1, 3): [0.1, 0.1, 0.6, 0.2],
         (1, 2, 3): [0.6, 0.2, 0.1, 0.1], (1, 3, 2): [0.6, 0.2, 0.1, 0.1]}


def table_step(tokens, state):
    """state: (K, t) tokens so far; unknown prefixes give the uniform distribution."""
    state = torch.cat([state, tokens[:, None]], dim=1) if tokens[0] != BOS else state
    probs = torch.tensor([TABLE.get(tuple(row), [0.25] * 4) for row in state.tolist()])
    return probs.log(), state


def reorder_rows(state, idx):
    return state[idx]


def test_beam_search_beats_greedy_on_the_books_example():
    start = torch.empty(1, 0, dtype=torch.long)
    tokens, log_p = greedy_search(table_step, start, BOS, EOS, 4)
    assert tokens == [1, 2, 3, EOS] and math.exp(log_p) == pytest.approx(0.048)
    tokens, score = beam_search(table_step, start, reorder_rows, BOS, EOS, 4, beam_size=2, alpha=0.0)
    assert tokens == [1, 3, 2, EOS] and math.exp(score) == pytest.approx(0.054)
    # without a length penalty the best output of all is <eos> alone (P = 0.1); with one, A C B <eos>
    assert exhaustive_search(table_step, start, reorder_rows, BOS, EOS, 4, 4, alpha=0.0)[0] == [EOS]
    assert exhaustive_search(table_step, start, reorder_rows, BOS, EOS, 4, 4, alpha=0.75)[0] == [1, 3, 2, EOS]
    # the score is the book's log P / L^alpha, L counting <eos>: A C B <eos> has L = 4
    for search in (lambda: exhaustive_search(table_step, start, reorder_rows, BOS, EOS, 4, 4, alpha=0.75),
                   lambda: beam_search(table_step, start, reorder_rows, BOS, EOS, 4, beam_size=2, alpha=0.75)):
        assert search()[1] == pytest.approx(math.log(0.054) / 4 ** 0.75)
    with pytest.raises(ValueError, match="at least 1"):
        beam_search(table_step, start, reorder_rows, BOS, EOS, 4, beam_size=0)
    with pytest.raises(ValueError, match="beam_size and max_len must be at least 1, got 2 and 0"):
        beam_search(table_step, start, reorder_rows, BOS, EOS, 0, beam_size=2)


@pytest.fixture(scope="module")
def random_decoder():
    """A small random GRU decoder (V = 5) started from a random encoder state."""
    torch.manual_seed(3)
    model = seq2seq_model(6, 5, 4, 8, 2).eval()
    X = torch.randint(0, 6, (1, 4))
    state = model.decoder.init_state(model.encoder(X))

    def step(tokens, state):
        with torch.no_grad():
            logits, state = model.decoder(tokens[:, None], state)
        return torch.log_softmax(logits[:, 0] * 3, dim=-1), state  # sharper than at init

    return step, state, model.decoder.reorder_state


@pytest.mark.parametrize("alpha", [0.0, 0.75])
def test_beam_width_one_is_greedy_and_a_wide_beam_finds_the_exhaustive_optimum(random_decoder, alpha):
    step, state, reorder = random_decoder
    bos, eos, max_len, V = 1, 2, 4, 5
    greedy, greedy_log_p = greedy_search(step, state, bos, eos, max_len)
    beam1, score1 = beam_search(step, state, reorder, bos, eos, max_len, beam_size=1, alpha=alpha)
    assert beam1 == greedy and score1 == pytest.approx(sequence_score(greedy_log_p, len(greedy), alpha), abs=1e-5)
    best, best_score = exhaustive_search(step, state, reorder, bos, eos, max_len, V, alpha=alpha)
    wide, wide_score = beam_search(step, state, reorder, bos, eos, max_len, beam_size=V ** max_len, alpha=alpha)
    assert wide == best and wide_score == pytest.approx(best_score, abs=1e-5)
    for k in (1, 2, 3):  # a narrow beam can only do as well as the optimum
        assert beam_search(step, state, reorder, bos, eos, max_len, beam_size=k, alpha=alpha)[1] <= best_score + 1e-6


@pytest.mark.slow
@needs_real_data(["fra-eng"])
def test_seq2seq_reaches_the_books_loss_and_translations(tmp_path):
    """D2L §9.7 at the book's settings (300 epochs, about a minute on a CPU)."""
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    experiment = get_experiment("seq2seq")
    summary = run_experiment(experiment, experiment.make_options(device="cpu"), tmp_path / "run", progress=False)
    rows = {row["metric"]: row for row in summary["reference"]}
    assert rows["train_loss_d2l"]["reached"], rows["train_loss_d2l"]  # at most 0.0205
    assert summary["results"]["bleu_go"] == summary["results"]["bleu_i_lost"] == 1.0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_translations_probe_decodes_with_the_beam_it_is_given(beam_size, monkeypatch):
    """--beam-size 3 is beam search of width 3 (it once also needed --decoding beam, and was greedy without)."""
    from types import SimpleNamespace

    import divekit.models.seq2seq as seq2seq
    from divekit.experiments.parts import Translations

    widths = []
    monkeypatch.setattr(seq2seq, "translate", lambda *args, beam_size: widths.append(beam_size) or "va !")
    data = SimpleNamespace(info=SimpleNamespace(src_vocab=None, tgt_vocab=None, num_steps=10))
    results, _ = Translations(beam_size=beam_size).run(None, data, "cpu")
    assert widths == [beam_size] * 4 and results["bleu_go"] == 1.0

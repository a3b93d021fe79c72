"""BERT (D2L §14.8-14.10, §15.6): the encoder against Hugging Face's BertModel with converted weights
(both ways, and a checkpoint folder on disk), against the d2l package's BERTModel (a saved tiny
model), padding invariance, the "crane" example, the pretraining loss against the book's formula,
the fine-tuning heads and their learning rates, and WordPiece against Hugging Face's tokenizer."""

import json
from pathlib import Path

import pytest
import torch

from divekit.data.batch import BertPretraining, TextClassification
from divekit.data.text import Vocab
from divekit.models.bert import BERTClassifier, BERTConfig, BERTModel, BERTTagger, encode_text
from divekit.models import bert_weights
from divekit.models.bert_weights import (config_from_hf, from_d2l_state_dict, from_hf_state_dict, hf_config,
                                         load_hf_checkpoint, to_hf_state_dict)
from divekit.models.registry import create_model, model_config
from divekit.ops import fast, scratch
from divekit.train.bert import BertPretrainingTask, TextClassificationTask

TWINS = [scratch, fast]
IDS = ["scratch", "fast"]
F64 = torch.float64
DATA = Path(__file__).parent / "data"
ORIGINAL = dict(vocab_size=30, num_hiddens=16, ffn_num_hiddens=24, num_heads=4, num_layers=2, max_positions=20,
                activation="gelu", norm_eps=1e-12, embed_norm=True, init="bert", dropout=0.1)


def original(ops, seed=0, **overrides):
    torch.manual_seed(seed)
    return BERTModel(BERTConfig(**{**ORIGINAL, **overrides}), ops).double().eval()


def inputs(B=3, T=9, V=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(V, (B, T), generator=g)
    segments = (torch.arange(T) >= 4).long().expand(B, T)
    valid_lens = torch.tensor([T, 5, 7])[:B]
    return tokens, segments, valid_lens


def attention_mask(tokens, valid_lens):
    """Hugging Face's attention_mask (B, T): 1 on the real tokens, 0 on the padding."""
    return (torch.arange(tokens.shape[1])[None] < valid_lens[:, None]).long()


def hf_pretraining(model):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(**hf_config(model.config))
    reference = transformers.BertForPreTraining(config).double().eval()
    reference.load_state_dict(to_hf_state_dict(model), strict=True)
    return reference


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_divekit_bert_equals_hugging_face_bert_with_its_weights(ops):
    model = original(ops)
    reference = hf_pretraining(model)
    tokens, segments, valid_lens = inputs()
    mask = attention_mask(tokens, valid_lens)
    positions = torch.tensor([[1, 2], [3, 4], [1, 6]])
    with torch.no_grad():
        encoded, mlm, nsp = model(tokens, segments, valid_lens, positions)
        theirs = reference(input_ids=tokens, token_type_ids=segments, attention_mask=mask, output_hidden_states=True)
    real = mask.bool()
    torch.testing.assert_close(encoded[real], theirs.hidden_states[-1][real])  # padding rows are nobody's business
    torch.testing.assert_close(nsp, theirs.seq_relationship_logits)
    torch.testing.assert_close(mlm, theirs.prediction_logits[torch.arange(3)[:, None], positions])
    pooled = reference.bert.pooler(theirs.hidden_states[-1])
    torch.testing.assert_close(model.pooler(encoded), pooled)


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_a_tied_bert_shares_its_embeddings_with_the_mlm_output_as_hugging_face_ties_them(ops):
    from divekit.models.registry import model_config

    model = original(ops, tie_embeddings=True)
    assert model.mlm.decoder.weight is model.encoder.token_embedding.weight
    reference = hf_pretraining(model)  # its config ties them too (hf_config), as the published bert-base's
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert reference.cls.predictions.decoder.weight is reference.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(reference.bert.embeddings.word_embeddings.weight, model.encoder.token_embedding.weight)
    tokens, segments, valid_lens = inputs()
    positions = torch.tensor([[1, 2], [3, 4], [1, 6]])
    mask = attention_mask(tokens, valid_lens)
    with torch.no_grad():
        _, mlm, _ = model(tokens, segments, valid_lens, positions)
        theirs = reference(input_ids=tokens, token_type_ids=segments, attention_mask=mask)
    torch.testing.assert_close(mlm, theirs.prediction_logits[torch.arange(3)[:, None], positions])
    assert model_config("bert-base").tie_embeddings and not model_config("bert").tie_embeddings  # the book's: its own


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_a_hugging_face_bert_converts_to_divekit_and_back_unchanged(ops):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    config = transformers.BertConfig(**hf_config(BERTConfig(**ORIGINAL)))
    theirs = transformers.BertForPreTraining(config).double().eval()
    model = BERTModel(config_from_hf(config.to_dict()), ops).double().eval()
    model.load_state_dict(from_hf_state_dict(theirs.state_dict()))
    tokens, segments, valid_lens = inputs(seed=5)
    mask = attention_mask(tokens, valid_lens)
    with torch.no_grad():
        hidden = theirs.bert(input_ids=tokens, token_type_ids=segments, attention_mask=mask).last_hidden_state
        encoded = model.encoder(tokens, segments, valid_lens)
    torch.testing.assert_close(encoded[mask.bool()], hidden[mask.bool()])
    back = to_hf_state_dict(model)
    for key, value in theirs.state_dict().items():
        if key in back:
            torch.testing.assert_close(back[key], value, msg=key)
    assert set(theirs.state_dict()) - set(back) <= {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_checkpoint_folder_on_disk_loads_with_its_vocabulary(tmp_path, weights):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(4)
    config = transformers.BertConfig(**hf_config(BERTConfig(**ORIGINAL)))
    theirs = transformers.BertModel(config).eval()  # no pretraining heads, as many published checkpoints
    if weights == "model.safetensors":
        theirs.save_pretrained(tmp_path)
    else:  # an old checkpoint: LayerNorm gamma/beta, no prefix
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in theirs.state_dict().items()}
        torch.save(state, tmp_path / weights)
        (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(specials + [f"w{i}" for i in range(25)]) + "\n")
    model, vocab = load_hf_checkpoint(tmp_path, "fast")
    assert vocab["<cls>"] == 2 and vocab["<pad>"] == 0 and vocab.unk == 1
    assert vocab.tokenize("W3 w99") == ["w3", "[UNK]"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "strip_accents": False,
                                                                "tokenize_chinese_chars": False}))
    _, configured = load_hf_checkpoint(tmp_path, "fast")
    assert (configured.lower_case, configured.strip_accents, configured.split_cjk) == (True, False, False)
    model.eval()
    tokens, segments, valid_lens = inputs(seed=6)
    mask = attention_mask(tokens, valid_lens)
    with torch.no_grad():
        hidden = theirs(input_ids=tokens, token_type_ids=segments, attention_mask=mask).last_hidden_state
        encoded = model.encoder(tokens, segments, valid_lens)
    torch.testing.assert_close(encoded[mask.bool()], hidden[mask.bool()], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_a_saved_pretraining_checkpoint_ties_its_masked_lm_decoder_to_the_word_embeddings(tmp_path, ops):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(7)
    config = transformers.BertConfig(**{**hf_config(BERTConfig(**ORIGINAL)), "tie_word_embeddings": True})
    theirs = transformers.BertForPreTraining(config).eval()
    theirs.save_pretrained(tmp_path)  # the decoder weight is the word embeddings: not written twice
    model, _ = load_hf_checkpoint(tmp_path, ops)
    model.eval()
    tokens, segments, valid_lens = inputs(seed=8)
    mask = attention_mask(tokens, valid_lens)
    positions = torch.tensor([[1, 2], [3, 4], [1, 6]])
    with torch.no_grad():
        _, mlm, nsp = model(tokens, segments, valid_lens, positions)
        reference = theirs(input_ids=tokens, token_type_ids=segments, attention_mask=mask)
    expected = reference.prediction_logits[torch.arange(3)[:, None], positions]
    torch.testing.assert_close(mlm, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(nsp, reference.seq_relationship_logits, rtol=1e-4, atol=1e-5)
    state = from_hf_state_dict(theirs.state_dict())
    del state["mlm.dense.weight"]  # part of a head missing: refused, not left drawn at random
    with pytest.raises(ValueError, match=r"does not fit this BERT: missing \['mlm.dense.weight'\]"):
        bert_weights._load(BERTModel(config_from_hf(config.to_dict()), ops), state, "a file")


def test_a_masked_lm_checkpoint_without_a_pooler_loads_with_a_fresh_one(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(9)
    config = transformers.BertConfig(**{**hf_config(BERTConfig(**ORIGINAL)), "tie_word_embeddings": True})
    theirs = transformers.BertForMaskedLM(config).eval()  # run_mlm's model: no pooler in the file
    theirs.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="divekit"):
        model, _ = load_hf_checkpoint(tmp_path, "fast")
    assert "has no pooler" in caplog.text
    model.eval()
    tokens, segments, valid_lens = inputs(seed=10)
    mask = attention_mask(tokens, valid_lens)
    positions = torch.tensor([[1, 2], [3, 4], [1, 6]])
    with torch.no_grad():
        _, mlm, _ = model(tokens, segments, valid_lens, positions)
        reference = theirs(input_ids=tokens, token_type_ids=segments, attention_mask=mask).logits
    torch.testing.assert_close(mlm, reference[torch.arange(3)[:, None], positions], rtol=1e-4, atol=1e-5)
    state = from_hf_state_dict(theirs.state_dict())
    state["pooler.dense.bias"] = torch.zeros(config.hidden_size)  # half a pooler: refused
    with pytest.raises(ValueError, match=r"does not fit this BERT: missing \['pooler.dense.weight'\]"):
        bert_weights._load(BERTModel(config_from_hf(config.to_dict()), fast), state, "a file")


def test_conversions_refuse_what_has_no_twin(tmp_path):
    book_style = create_model("bert", "fast", vocab_size=20, num_hiddens=8, ffn_num_hiddens=16, max_positions=16)
    with pytest.raises(ValueError, match="only a BERT with --embed-norm converts to Hugging Face"):
        to_hf_state_dict(book_style)
    with pytest.raises(ValueError, match="hidden_act 'silu' is not supported"):
        config_from_hf({"hidden_act": "silu"})
    with pytest.raises(ValueError, match="not a BERT state dict"):
        from_hf_state_dict({"foo.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match="is not a Hugging Face checkpoint folder: it has no config.json, "
                                                "no model.safetensors or pytorch_model.bin$"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert bert_weights.hf_checkpoint_weights(tmp_path) == tmp_path / "pytorch_model.bin"
    with pytest.raises(FileNotFoundError, match="folder to fine-tune: it has no vocab.txt$"):  # the one check of
        bert_weights.hf_checkpoint_weights(tmp_path, to_fine_tune=True)                      # the run's preflight
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert bert_weights.hf_checkpoint_weights(tmp_path) == tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match=r"unknown d2l pretrained BERT 'bert.large'; the book's are bert.small and "
                                         r"bert.base \(on the command line --pretrained d2l:bert.small, d2l:bert.base\)"):
        bert_weights.d2l_pretrained_dataset("bert.large")
    with pytest.raises(ValueError, match="not a state dict of d2l's BERTModel"):
        from_d2l_state_dict({})


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_the_d2l_packages_bert_model_converts_with_equal_outputs(ops):
    saved = torch.load(DATA / "d2l_bert_tiny.pt", weights_only=True)  # made by tests/data/make_d2l_bert_tiny.py
    state, sizes = from_d2l_state_dict(saved["state_dict"])
    assert sizes == dict(vocab_size=20, num_hiddens=8, ffn_num_hiddens=16, num_layers=2, max_positions=16)
    model = BERTModel(BERTConfig(**sizes, num_heads=2), ops).eval()
    model.load_state_dict(state)
    with torch.no_grad():
        encoded, mlm, nsp = model(saved["tokens"], saved["segments"], saved["valid_lens"].long(),
                                  saved["pred_positions"])
    real = torch.arange(encoded.shape[1])[None] < saved["valid_lens"][:, None]  # (B, T)
    assert not real.all()  # the saved batch has padding, where divekit's encoder outputs 0
    torch.testing.assert_close(encoded[real], saved["encoded"][real], rtol=1e-4, atol=1e-5)
    assert not encoded[~real].any()
    torch.testing.assert_close(mlm, saved["mlm"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(nsp, saved["nsp"], rtol=1e-4, atol=1e-5)


def test_presets_have_the_published_sizes():
    base, large = model_config("bert-base"), model_config("bert-large")
    assert (base.num_layers, base.num_hiddens, base.num_heads, base.ffn_num_hiddens) == (12, 768, 12, 3072)
    assert (large.num_layers, large.num_hiddens, large.num_heads, large.ffn_num_hiddens) == (24, 1024, 16, 4096)
    small, book = model_config("bert-small"), model_config("bert")
    assert (small.num_layers, small.num_hiddens, small.num_heads, small.ffn_num_hiddens) == (2, 256, 4, 512)
    assert (book.num_layers, book.num_hiddens, book.num_heads, book.ffn_num_hiddens) == (2, 128, 2, 256)
    assert book.dropout == 0.2
    with torch.device("meta"):  # 110M parameters, counted without allocating them
        count = sum(p.numel() for p in create_model("bert-base").encoder.parameters())
    assert 108e6 < count < 110e6  # + the pooler and the heads: the paper's 110M
    with pytest.raises(ValueError, match="--num-hiddens 10 must be divisible by --num-heads 4"):
        BERTConfig(num_hiddens=10, num_heads=4)


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_padding_changes_nothing_and_too_long_inputs_are_refused(ops):
    model = original(ops, max_positions=12)
    tokens, segments, valid_lens = inputs(B=2, T=7)
    padded = torch.cat([tokens, torch.randint(30, (2, 5))], dim=1)  # (B, 12): any junk after the valid length
    with torch.no_grad():
        short = model.encoder(tokens, segments, valid_lens)
        long = model.encoder(padded, torch.cat([segments, torch.ones(2, 5, dtype=torch.long)], 1), valid_lens)
    for b, n in enumerate(valid_lens.tolist()):
        torch.testing.assert_close(long[b, :n], short[b, :n])
    with pytest.raises(ValueError, match="a sequence of 13 tokens is longer than the 12 positions"):
        model.encoder(torch.zeros(1, 13, dtype=torch.long))


def test_crane_gets_a_different_vector_in_each_context():
    vocab = Vocab("a crane is flying driver came he just left".split(),
                  reserved_tokens=["<pad>", "<mask>", "<cls>", "<sep>"])
    torch.manual_seed(0)
    model = create_model("bert", "fast", vocab_size=len(vocab), num_hiddens=16, ffn_num_hiddens=32, max_positions=32)
    text = encode_text(model, vocab, "a crane is flying")
    pair = encode_text(model, vocab, "a crane driver came", ["he", "just", "left"])
    assert text.shape == (1, 6, 16) and pair.shape == (1, 10, 16)  # the book's shapes: <cls> ... <sep> [... <sep>]
    assert model.training  # its mode as it was; the representation itself is made in eval mode (no dropout)
    assert not torch.allclose(text[0, 2], pair[0, 2], atol=1e-3)  # "crane" in two contexts
    again = encode_text(model, vocab, ["a", "crane", "is", "flying"])
    torch.testing.assert_close(again, text)  # deterministic, strings or tokens alike


def book_mlm_loss(mlm_logits, mlm_labels, mlm_weights):
    """d2l's _get_batch_loss_bert, verbatim in effect: nn.CrossEntropyLoss() (a mean) times the weights."""
    V = mlm_logits.shape[-1]
    loss = torch.nn.CrossEntropyLoss()(mlm_logits.reshape(-1, V), mlm_labels.reshape(-1)) * mlm_weights.reshape(-1, 1)
    return loss.sum() / (mlm_weights.sum() + 1e-8)


@pytest.mark.parametrize("reduction", ["book", "real"])
def test_pretraining_loss_is_the_books_or_the_real_mean(reduction):
    torch.manual_seed(0)
    model = create_model("bert", "fast", vocab_size=30, num_hiddens=8, ffn_num_hiddens=16, max_positions=16).eval()
    tokens, segments, valid_lens = inputs(T=9)
    positions = torch.tensor([[1, 3, 0], [2, 0, 0], [4, 5, 6]])  # padding slots: position 0, label 0, weight 0
    weights = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1]])
    labels = torch.tensor([[7, 8, 0], [9, 0, 0], [1, 2, 3]])
    batch = BertPretraining(tokens, segments, valid_lens, positions, weights, labels, torch.tensor([0, 1, 1]))
    out = BertPretrainingTask(fast.cross_entropy, reduction).step(model, batch, training=False)
    with torch.no_grad():
        _, mlm, nsp = model(tokens, segments, valid_lens, positions)  # all B x P slots, as the book
    book = book_mlm_loss(mlm, labels, weights)
    real = torch.nn.functional.cross_entropy(mlm[weights > 0], labels[weights > 0])
    nsp_loss = torch.nn.functional.cross_entropy(nsp, batch.nsp_labels)
    torch.testing.assert_close(out.sums["mlm_d2l"], book)
    torch.testing.assert_close(out.sums["mlm"], real)
    torch.testing.assert_close(out.loss, (book if reduction == "book" else real) + nsp_loss)
    assert out.sums["pairs"] == 3 and out.sums["steps"] == 1
    with pytest.raises(ValueError, match="reduction must be 'book' or 'real'"):
        BertPretrainingTask(fast.cross_entropy, "sum")


def test_masked_lm_takes_positions_per_row_or_flat():
    torch.manual_seed(0)
    model = create_model("bert", "scratch", vocab_size=30, num_hiddens=8, ffn_num_hiddens=16, max_positions=16).eval()
    X = torch.randn(2, 5, 8)
    positions = torch.tensor([[1, 4], [0, 2]])
    per_row = model.mlm(X, positions)  # (B, P, V)
    flat = model.mlm(X, (torch.arange(2)[:, None] * 5 + positions).reshape(-1))  # (N, V)
    assert per_row.shape == (2, 2, 30)
    torch.testing.assert_close(flat, per_row.reshape(4, 30))
    with pytest.raises(ValueError, match="pred_positions must be"):
        model.mlm(X, positions[None])


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_fine_tuning_heads_reuse_the_body_and_train_only_where_told(ops):
    torch.manual_seed(0)
    bert = BERTModel(BERTConfig(vocab_size=12, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=1,
                                max_positions=8, dropout=0.0), ops)
    classifier, tagger = BERTClassifier(bert, 3, ops), BERTTagger(bert, 4, ops)
    assert classifier.encoder is bert.encoder and classifier.pooler is bert.pooler and tagger.encoder is bert.encoder
    body = {id(p) for p in classifier.body_parameters()}
    assert body == {id(p) for p in (*bert.encoder.parameters(), *bert.pooler.parameters())}
    assert {id(p) for p in classifier.parameters()} - body == {id(classifier.output.weight), id(classifier.output.bias)}

    # a tagging task: each token's tag is its index mod 4; <cls> and padding carry -1 and are left out
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 12, (32, 8), generator=g)
    valid_lens = torch.randint(3, 9, (32,), generator=g)
    tags = torch.where(torch.arange(8)[None] < valid_lens[:, None], tokens % 4, -1)
    tags[:, 0] = -1
    batch = TextClassification(tokens, torch.zeros_like(tokens), valid_lens, tags)
    task = TextClassificationTask(ops.cross_entropy)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=0.01)
    first = task.step(tagger, batch, training=True)
    keep = tags >= 0
    torch.testing.assert_close(first.loss, torch.nn.functional.cross_entropy(
        tagger(tokens, None, valid_lens)[keep], tags[keep]))
    assert first.sums["count"] == int(keep.sum())
    for _ in range(60):
        out = task.step(tagger, batch, training=True)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.sums["correct"] / out.sums["count"] > 0.95


def test_fine_tuning_gives_the_body_a_smaller_learning_rate():
    from divekit.experiments.bert import finetune_optimizer

    bert = create_model("bert", "fast", vocab_size=12, num_hiddens=8, ffn_num_hiddens=16, max_positions=8)
    model = BERTClassifier(bert, 2, fast)
    optimizer = finetune_optimizer(model, "adam", "fast", lr=1e-3, body_lr_factor=0.1)
    body, head = optimizer.param_groups
    assert body["lr"] == pytest.approx(1e-4) and head["lr"] == 1e-3
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters())) and len(head["params"]) == 2


def test_wordpiece_tokenizes_as_hugging_face_does(tmp_path):
    transformers = pytest.importorskip("transformers")
    from divekit.data.wordpiece import WordPieceVocab

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cafe", "un", "##aff", "##able", "##s", "play",
              "##ing", "!", ",", "'", "s", "中", "a", "##b", "hello", "world", ".", "$", "5"]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    texts = ["The CAFÉ is unaffable!", "playing, play's  Hello\tWORLD.", "中国 $5 abab", "unknownword unaffables",
             "a" * 101, "\x00control\u200bchars", "hello\ue000 world\U000f0000",  # private use: dropped
             "hello [MASK] world[SEP]the [CLS]cafe [mask]"]  # special tokens stay whole (as written only)
    ours = WordPieceVocab.from_file(tmp_path / "vocab.txt")
    theirs = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    for text in texts:
        assert ours.tokenize(text) == theirs.tokenize(text), text
    cased = WordPieceVocab.from_file(tmp_path / "vocab.txt", lower_case=False)
    cased_theirs = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False)
    for text in texts:
        assert cased.tokenize(text) == cased_theirs.tokenize(text), text
    for lower_case, strip_accents, split_cjk in ((True, False, True), (False, True, False), (True, None, False)):
        ours = WordPieceVocab.from_file(tmp_path / "vocab.txt", lower_case, strip_accents, split_cjk)
        theirs = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=lower_case,
                                            strip_accents=strip_accents, tokenize_chinese_chars=split_cjk)
        for text in texts + ["Café ÜBER 中国abc"]:
            assert ours.tokenize(text) == theirs.tokenize(text), (text, lower_case, strip_accents, split_cjk)
    with pytest.raises(ValueError, match="a BERT vocabulary needs \\[MASK\\]"):
        WordPieceVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])

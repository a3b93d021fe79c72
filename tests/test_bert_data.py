"""BERT's data (D2L §14.8.4, §14.9, §15.1, §15.4, §15.7): inputs packed with tensor operations against
the book's per-example functions, the masking statistics (15 %, then 80/10/10), next-sentence pairs,
the WikiText-2 examples, truncation against the book's loop, and the SNLI and IMDb readers on tiny
files in their published formats."""

import math

import pytest
import torch

from conftest import needs_real_data
from divekit.data.batch import Split
from divekit.data.bert_data import (CLS, MASK, PAD, RESERVED, SEP, MaskTokens, get_tokens_and_segments,
                                    load_wiki_pretraining, mask_tokens, nsp_pairs, pack_pairs, read_wiki)
from divekit.data.loader import TensorLoader
from divekit.data.text import Vocab
from divekit.data.text_classification import (IMDB_CLASSES, SNLI_CLASSES, LabeledTexts, encode_texts,
                                              fra_eng_matching, read_imdb_folder, read_snli_file,
                                              truncated_lengths, wiki_tokenize, word_order)
from divekit.data.translation import preprocess, read_fra_eng, tokenize_pairs

WORDS = "the a crane is flying driver came he just left big red dog sat on mat".split()


def vocab():
    return Vocab(WORDS, reserved_tokens=RESERVED)


def test_get_tokens_and_segments_is_the_books():
    assert get_tokens_and_segments(["a", "b"]) == (["<cls>", "a", "b", "<sep>"], [0, 0, 0, 0])
    assert get_tokens_and_segments(["a"], ["b", "c"]) == (["<cls>", "a", "<sep>", "b", "c", "<sep>"],
                                                          [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("pairs", [True, False])
def test_packing_many_at_once_equals_the_books_one_by_one(pairs):
    v = vocab()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 6, (12,), generator=g).tolist()
    texts = [[WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=g)] for n in lengths]
    corpus = torch.tensor(v[[t for text in texts for t in text]] + [0])
    lens = torch.tensor([len(t) for t in texts])
    starts = lens.cumsum(0) - lens
    T = 16
    if pairs:
        tokens, segments, valid_lens = pack_pairs(corpus, starts[0::2], lens[0::2], starts[1::2], lens[1::2], T, v)
        examples = [get_tokens_and_segments(a, b) for a, b in zip(texts[0::2], texts[1::2])]
    else:
        tokens, segments, valid_lens = pack_pairs(corpus, starts, lens, None, None, T, v)
        examples = [get_tokens_and_segments(a) for a in texts]
    for row, (words, segs) in enumerate(examples):  # the book's _pad_bert_inputs: <pad> and segment 0 after
        assert tokens[row].tolist() == v[words] + [v[PAD]] * (T - len(words))
        assert segments[row].tolist() == segs + [0] * (T - len(segs))
        assert int(valid_lens[row]) == len(words)
    with pytest.raises(ValueError, match="does not fit max_len 4"):
        pack_pairs(corpus, starts, lens.clamp(min=2), None, None, 4, v)


def test_masks_choose_15_percent_and_replace_80_10_10():
    v = vocab()
    N, T = 4000, 40
    g = torch.Generator().manual_seed(0)
    valid_lens = torch.randint(6, T + 1, (N,), generator=g)
    words = torch.randint(len(RESERVED) + 1, len(v), (N, T), generator=g)
    t = torch.arange(T)[None]
    tokens = torch.where(t < valid_lens[:, None], words, v[PAD])
    tokens[:, 0] = v[CLS]
    sep = valid_lens // 2
    tokens[torch.arange(N), sep] = v[SEP]
    tokens[torch.arange(N), valid_lens - 1] = v[SEP]
    out = mask_tokens(tokens, valid_lens, v, torch.Generator().manual_seed(1))
    positions, labels, weights = out["pred_positions"], out["mlm_labels"], out["mlm_weights"].bool()
    P = round(0.15 * T)
    assert positions.shape == (N, P)
    # how many: the book's max(1, round(0.15 * len(tokens))), special tokens counted, rounding half to even
    assert weights.sum(1).tolist() == [max(1, round(0.15 * n)) for n in valid_lens.tolist()]
    assert torch.equal(weights, torch.arange(P)[None] < weights.sum(1, keepdim=True))  # real slots first
    rows = torch.arange(N)[:, None].expand(N, P)
    chosen = positions[weights]
    assert bool((chosen < valid_lens[:, None].expand(N, P)[weights]).all())  # never padding ...
    assert not bool(torch.isin(tokens[rows[weights], chosen], torch.tensor([v[CLS], v[SEP]])).any())  # ... nor specials
    real = positions.masked_fill(~weights, T)
    assert bool((real[:, 1:] > real[:, :-1]).logical_or(real[:, 1:] == T).all())  # ascending, no repeats
    assert torch.equal(labels[weights], tokens[rows[weights], chosen])  # the labels are the original tokens
    assert bool((positions[~weights] == 0).all()) and bool((labels[~weights] == 0).all())  # the book's padding
    # every position of an example is equally likely to be chosen: position 1 vs the last real one
    candidates = (t < valid_lens[:, None]) & (tokens != v[CLS]) & (tokens != v[SEP])
    hit = torch.zeros(N, T, dtype=torch.bool)
    hit[rows[weights], chosen] = True
    share = hit[candidates].float().mean()
    expected = (weights.sum() / candidates.sum()).item()
    assert abs(share.item() - expected) < 1e-6
    first, later = hit[:, 1][candidates[:, 1]].float().mean(), hit[:, 2:5][candidates[:, 2:5]].float().mean()
    assert abs(first - later) < 5 * math.sqrt(expected * (1 - expected) / candidates[:, 1].sum())

    # replacements: 80 % <mask>, 10 % the token itself, 10 % a random token of the whole vocabulary
    new = out["tokens"][rows[weights], chosen]
    n = len(new)
    masked = (new == v[MASK]).float().mean().item()
    kept = (new == labels[weights]).float().mean().item()
    random_share = 0.1 * (1 - 2 / len(v))  # a random token may be <mask> or the token itself by chance
    for share, p in ((masked, 0.8 + 0.1 / len(v)), (kept, 0.1 + 0.1 / len(v)), (1 - masked - kept, random_share)):
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (share, p)
    others = new[(new != v[MASK]) & (new != labels[weights])]
    counts = torch.bincount(others, minlength=len(v)).float()
    assert counts[v[CLS]] > 0 and counts[v[PAD]] > 0  # the book draws from every token, special ones too
    unchosen = ~hit & (t < T)
    assert torch.equal(out["tokens"][unchosen], tokens[unchosen])  # nothing else changes


def test_dynamic_masks_are_drawn_afresh_for_every_batch():
    v = vocab()
    tokens, segments, valid_lens = pack_pairs(torch.arange(5, 21), torch.tensor([0, 3]), torch.tensor([3, 5]),
                                              torch.tensor([8, 10]), torch.tensor([6, 2]), 20, v)
    zeros = torch.zeros(2, 3, dtype=torch.long)
    from divekit.data.batch import BertPretraining
    batch = BertPretraining(tokens, segments, valid_lens, zeros, zeros.float(), zeros, torch.tensor([1, 0]))
    transform = MaskTokens(v)
    g = torch.Generator().manual_seed(0)
    first, second = transform(batch, g), transform(batch, g)
    assert not torch.equal(first.pred_positions, second.pred_positions)
    assert torch.equal(first.mlm_labels[first.mlm_weights > 0],
                       tokens.gather(1, first.pred_positions)[first.mlm_weights > 0])


def test_next_sentence_pairs_are_consecutive_or_from_a_random_paragraph():
    lens = torch.tensor([2, 60, 2])  # a long paragraph beside two short ones
    a, b, is_next = nsp_pairs(lens, torch.Generator().manual_seed(0))
    assert len(a) == 1 + 59 + 1  # every sentence with a next one in its paragraph
    assert torch.equal(b[is_next == 1], a[is_next == 1] + 1)
    assert abs(is_next.float().mean().item() - 0.5) < 0.3
    many_a, many_b, many_next = nsp_pairs(torch.tensor([2, 60, 2]).repeat(200), torch.Generator().manual_seed(1))
    assert abs(many_next.float().mean().item() - 0.5) < 0.02
    # the book picks a random paragraph, then a sentence in it: a short paragraph's sentences are likelier
    paragraph = torch.repeat_interleave(torch.arange(600), torch.tensor([2, 60, 2]).repeat(200))
    random_b = many_b[many_next == 0]
    in_long = (paragraph[random_b] % 3 == 1).float().mean().item()
    assert abs(in_long - 1 / 3) < 0.03  # by sentence count it would be 60 / 64


def test_wiki_examples_are_next_sentence_pairs_with_masks():
    paragraphs = [["the crane is flying", "he just left", "the dog sat"], ["a big red dog", "on the mat"],
                  ["driver came", "he left the crane on the mat and the dog sat on it"]]
    data = load_wiki_pretraining(12, torch.Generator().manual_seed(0), min_freq=1, paragraphs=paragraphs)
    v, e = data.vocab, data.examples
    assert v.idx_to_token[:5] == ["<unk>", *RESERVED]
    sentences = {s: i for i, s in enumerate(s for p in paragraphs for s in p)}
    assert len(e) == 3  # of the 4 consecutive pairs, the one with 14 words does not fit 12 tokens
    for row in range(len(e)):
        n = int(e.valid_lens[row])
        restored = e.tokens[row].clone()
        real = e.mlm_weights[row] > 0
        restored[e.pred_positions[row][real]] = e.mlm_labels[row][real]
        words = v.to_tokens(restored[:n])
        second = words.index(SEP)
        a, b = " ".join(words[1:second]), " ".join(words[second + 1:-1])
        assert words[0] == CLS and words[-1] == SEP and a in sentences and b in sentences
        assert e.segments[row].tolist() == [0] * (second + 1) + [1] * (n - second - 1) + [0] * (12 - n)
        if e.nsp_labels[row] == 1:
            assert sentences[b] == sentences[a] + 1
    with pytest.raises(ValueError, match="no sentence pair fits max_len 4"):
        load_wiki_pretraining(4, paragraphs=paragraphs, min_freq=1)


def test_unknown_words_of_a_bert_vocabulary_become_its_unk_not_index_0():
    from divekit.data.wordpiece import WordPieceVocab

    vocab = WordPieceVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "a"])  # 0 is [PAD] here
    data = load_wiki_pretraining(8, torch.Generator().manual_seed(0), paragraphs=[["hello world", "zzz a"]],
                                 vocab=vocab)
    e = data.examples
    restored = e.tokens[0].clone()
    real = e.mlm_weights[0] > 0
    restored[e.pred_positions[0][real]] = e.mlm_labels[0][real]
    assert vocab.to_tokens(restored[:int(e.valid_lens[0])]) == ["[CLS]", "hello", "world", "[SEP]", "[UNK]", "a",
                                                                "[SEP]"]


@needs_real_data(["wikitext-2"])
def test_wikitext2_gives_the_books_vocabulary_and_about_as_many_pairs():
    paragraphs = read_wiki()
    assert len(paragraphs) == 15496 and paragraphs[0][0].startswith("senjō no valkyria 3")
    data = load_wiki_pretraining(64, torch.Generator().manual_seed(0), paragraphs=paragraphs)
    assert len(data.vocab) == 20256  # the book's len(vocab)
    assert 42_000 < len(data.examples) < 45_000  # pairs that fit 64 tokens (half of them random: a spread)


def test_truncation_equals_the_books_loop():
    def book(a, b, budget):  # _truncate_pair_of_tokens, on lengths
        while a + b > budget:
            if a > b:
                a -= 1
            else:
                b -= 1
        return a, b

    for budget in range(1, 12):
        for a in range(0, 14):
            for b in range(0, 14):
                assert truncated_lengths(a, b, budget) == book(a, b, budget), (a, b, budget)


def test_encoding_texts_cuts_pads_and_keeps_labels():
    v = vocab()
    pairs = LabeledTexts([["the", "big", "red", "dog"], ["a"]], [["sat", "on", "the", "mat"], ["crane", "zebra"]],
                         [2, 0], SNLI_CLASSES)
    batch = encode_texts(pairs, v, 8)
    assert v.to_tokens(batch.tokens[0]) == ["<cls>", "the", "big", "red", "<sep>", "sat", "on", "<sep>"]
    assert v.to_tokens(batch.tokens[1]) == ["<cls>", "a", "<sep>", "crane", "<unk>", "<sep>", "<pad>", "<pad>"]
    assert batch.segments[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1] and batch.valid_lens.tolist() == [8, 6]
    assert batch.y.tolist() == [2, 0]
    single = encode_texts(LabeledTexts([["the", "big", "red", "dog", "sat"], []], None, [1, 0], IMDB_CLASSES), v, 5)
    assert v.to_tokens(single.tokens[0]) == ["<cls>", "the", "big", "red", "<sep>"]
    assert v.to_tokens(single.tokens[1]) == ["<cls>", "<sep>", "<pad>", "<pad>", "<pad>"]
    assert single.segments.sum() == 0
    with pytest.raises(ValueError, match="max_len 3 leaves no room"):
        encode_texts(pairs, v, 3)


SNLI_HEADER = ("gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
               "sentence1\tsentence2\tcaptionID\tpairID\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5")


def test_snli_file_reads_as_the_book_reads_it(tmp_path):
    rows = [
        "neutral\t( ( A person ) ( on ( a horse ) ) )\t( ( A person ) ( is ( training ( his horse ) ) ) )"
        "\t(ROOT)\t(ROOT)\tA person on a horse.\tA person is training his horse.\t3416050480.jpg#4"
        "\t3416050480.jpg#4r1n\tneutral\t\t\t\t",
        "-\t( A dog )\t( A cat )\t(ROOT)\t(ROOT)\tA dog\tA cat\tx\ty\tneutral\tcontradiction\t\t\t",
        "contradiction\t( ( Two  women ) ( are ( hugging ) ) )\t( Nobody ( is hugging ) )\t(ROOT)\t(ROOT)\t"
        "Two women are hugging.\tNobody is hugging.\tz\tw\tcontradiction\t\t\t\t",
    ]
    path = tmp_path / "snli_1.0_test.txt"
    path.write_text("\n".join([SNLI_HEADER, *rows]) + "\n")
    data = read_snli_file(path)
    assert data.texts_a == [["A", "person", "on", "a", "horse"], ["Two", "women", "are", "hugging"]]
    assert data.texts_b == [["A", "person", "is", "training", "his", "horse"], ["Nobody", "is", "hugging"]]
    assert data.labels == [SNLI_CLASSES.index("neutral"), SNLI_CLASSES.index("contradiction")] == [2, 1]
    (tmp_path / "other.txt").write_text("premise\thypothesis\n")
    with pytest.raises(ValueError, match="is not an SNLI file"):
        read_snli_file(tmp_path / "other.txt")


def test_a_word_level_vocabulary_sees_lower_case_and_a_cased_wordpiece_the_case(tmp_path):
    from divekit.data.wordpiece import WordPieceVocab

    data = LabeledTexts([["John", "plays", "in", "Paris", "."]], None, [0], ("a", "b"))
    words = Vocab([["john", "plays", "in", "paris", "."]], reserved_tokens=RESERVED)
    encoded = encode_texts(data, words, 8)  # the book: s.lower() before d2l.tokenize (§15.7.2)
    assert words.to_tokens(encoded.tokens[0][:7]) == [CLS, "john", "plays", "in", "paris", ".", SEP]
    cased = WordPieceVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "John", "plays", "in", "Paris", "."],
                           lower_case=False)
    encoded = encode_texts(data, cased, 8, cased.tokenize)
    assert cased.to_tokens(encoded.tokens[0][:7]) == ["[CLS]", "John", "plays", "in", "Paris", ".", "[SEP]"]


def test_imdb_folder_reads_as_the_book_reads_it(tmp_path):
    for label, reviews in (("pos", ["A great film.<br />Loved it", "Fine\n acting"]), ("neg", ["Dull, dull."])):
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True)
        for i, review in enumerate(reviews):
            (folder / f"{i}_{9 if label == 'pos' else 2}.txt").write_bytes(review.encode("utf-8"))
    data = read_imdb_folder(tmp_path, "train")
    assert data.texts_a == [["A", "great", "film.<br", "/>Loved", "it"], ["Fine", "acting"], ["Dull,", "dull."]]
    assert data.labels == [1, 1, 0] and data.texts_b is None and IMDB_CLASSES[1] == "pos"
    with pytest.raises(FileNotFoundError, match="test/pos is missing"):
        read_imdb_folder(tmp_path, "test")


def test_wiki_tokenize_writes_words_as_wikitext_does():
    assert wiki_tokenize("I don't know, it's Tom's!") == ["i", "don", "'t", "know", ",", "it", "'s", "tom", "'s", "!"]


def test_mismatched_pairs_take_the_translation_of_a_sentence_as_long():
    from divekit.data.text_classification import _matching

    english = [f"s{i} " + "w " * (i % 3) for i in range(300)]  # 1, 2 or 3 words
    translation = {e: f"t{i}" for i, e in enumerate(english)}
    data = _matching(english, translation, torch.Generator().manual_seed(0))
    owner = {f"t{i}": e for i, e in enumerate(english)}
    assert abs(sum(data.labels) / 300 - 0.5) < 0.1
    for words, french, label in zip(data.texts_a, data.texts_b, data.labels):
        source = owner[french[0]]
        assert label == (source.split() == words)
        assert len(source.split()) == len(words)  # the mismatch has as many words


@needs_real_data(["fra-eng"])
def test_fra_eng_matching_keeps_test_sentences_out_of_training():
    train, test = fra_eng_matching(600, 300, seed=0)
    assert len(train) == 600 and len(test) == 300 and train.classes == ("mismatched", "translation")
    assert {" ".join(t) for t in train.texts_a}.isdisjoint(" ".join(t) for t in test.texts_a)
    again, _ = fra_eng_matching(600, 300, seed=0)
    assert again.labels == train.labels and again.texts_b == train.texts_b


@needs_real_data(["fra-eng"])
def test_word_order_swaps_two_distinct_words_of_half_the_sentences_and_never_the_full_stop():
    train, test = word_order(2000, 500, seed=0)
    assert len(train) == 2000 and len(test) == 500 and train.texts_b is None
    assert train.classes == ("swapped", "original")
    originals = {}
    english, _ = tokenize_pairs(preprocess(read_fra_eng()))
    for sentence in english:
        words = wiki_tokenize(" ".join(sentence))
        originals.setdefault(tuple(sorted(words)), set()).add(tuple(words))
    swapped = 0
    for tokens, label in zip(train.texts_a, train.labels):
        known = originals[tuple(sorted(tokens))]              # the same words: a swap adds or drops none
        if label == 1:
            assert tuple(tokens) in known
            continue
        swapped += 1
        source = [s for s in known if sum(a != b for a, b in zip(s, tokens)) == 2]
        assert source, f"{tokens} is not one swap away from a sentence of fra-eng"
        i, j = (k for k, (a, b) in enumerate(zip(source[0], tokens)) if a != b)
        assert source[0][i] == tokens[j] and source[0][j] == tokens[i]
        assert tokens[-1] == source[0][-1]                    # the final mark stays where it is
    assert 900 < swapped < 1100
    assert {" ".join(t) for t in train.texts_a}.isdisjoint(" ".join(t) for t in test.texts_a)
    again, _ = word_order(2000, 500, seed=0)
    assert again.texts_a == train.texts_a and again.labels == train.labels


def test_a_saved_vocabulary_and_a_loader_of_some_batches():
    v = Vocab.from_tokens(["<unk>", "<pad>", "x"])
    assert v["x"] == 2 and v["y"] == 0
    with pytest.raises(ValueError, match="must start with <unk>"):
        Vocab.from_tokens(["<pad>", "<unk>"])
    loader = TensorLoader(Split(torch.arange(100), torch.arange(100)), 8, shuffle=True, num_batches=3)
    assert len(loader) == 3 and len(list(loader)) == 3
    loader.set_epoch(2)
    assert len({int(b.X[0]) for b in loader}) == 3
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        TensorLoader(Split(torch.arange(4), torch.arange(4)), 2, num_batches=0)

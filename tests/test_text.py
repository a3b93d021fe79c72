"""Text preprocessing, vocabulary, corpus statistics and language-model batches (D2L §8.2-8.3)."""

import collections
import itertools

import pytest
import torch

from divekit.data.text import (
    LMLoader,
    Vocab,
    count_corpus,
    load_corpus_time_machine,
    ngram_freqs,
    read_time_machine,
    tokenize,
)


@pytest.fixture(scope="module")
def lines():
    return read_time_machine()


def test_time_machine_matches_the_book(lines):
    assert len(lines) == 3221  # D2L §8.2.1
    assert lines[0] == "the time machine by h g wells"
    assert all(set(line) <= set("abcdefghijklmnopqrstuvwxyz ") for line in lines)
    words = Vocab(tokenize(lines, "word"))
    assert words.token_freqs[:5] == [("the", 2261), ("i", 1267), ("and", 1245), ("of", 1155), ("a", 816)]
    assert len(words) == 4580
    corpus, chars = load_corpus_time_machine()
    assert len(chars) == 28 and chars.idx_to_token[:3] == ["<unk>", " ", "e"]
    assert len(corpus) == 170580 and len(load_corpus_time_machine(10000)[0]) == 10000
    assert chars.to_tokens(corpus[:16].tolist()) == list("the time machine")


def test_tokenize_by_word_and_char():
    assert tokenize(["a bc", ""], "word") == [["a", "bc"], []]
    assert tokenize(["a bc"], "char") == [["a", " ", "b", "c"]]
    with pytest.raises(ValueError, match="'word' or 'char'"):
        tokenize(["a"], "byte")


def test_vocab_orders_by_count_with_unk_and_reserved_first():
    tokens = [["b", "a", "c", "a"], ["c", "a", "d"]]  # a:3, c:2, b:1, d:1 (b seen before d)
    vocab = Vocab(tokens, reserved_tokens=["<pad>", "<bos>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "a", "c", "b", "d"]
    assert vocab.token_freqs == [("a", 3), ("c", 2), ("b", 1), ("d", 1)]
    assert vocab.unk == 0 and vocab["zebra"] == 0
    assert len(Vocab(tokens, min_freq=2)) == 3  # <unk>, a, c
    assert count_corpus(tokens) == collections.Counter({"a": 3, "c": 2, "b": 1, "d": 1})


def test_vocab_round_trip(lines):
    tokens = tokenize(lines[:50], "word")
    vocab = Vocab(tokens)
    for line in tokens:
        assert vocab.to_tokens(vocab[line]) == line
    assert vocab.to_tokens(torch.tensor(vocab[tokens[0]])) == tokens[0]
    assert vocab[tuple(tokens[0][:2])] == vocab[tokens[0][:2]]


def test_vocab_rejects_bad_reserved_tokens():
    with pytest.raises(ValueError, match="index 0"):
        Vocab(["a"], reserved_tokens=["<unk>"])
    with pytest.raises(ValueError, match="repeats"):
        Vocab(["a"], reserved_tokens=["<pad>", "<pad>"])


def test_ngram_freqs_match_brute_force():
    words = ["the", "time", "traveller", "the", "time", "machine", "the", "time", "traveller", "said"]
    counts = dict(ngram_freqs(words, 3))
    brute = collections.Counter(tuple(words[i:i + 3]) for i in range(len(words) - 2))
    assert counts == brute and counts[("the", "time", "traveller")] == 2
    assert ngram_freqs(words, 1)[0] == (("the",), 3)
    with pytest.raises(ValueError, match="at least 1"):
        ngram_freqs(words, 0)


N, B, T = 200, 3, 5


@pytest.mark.parametrize("epoch", range(4))
def test_sequential_batches_continue_each_other_and_cover_the_corpus(epoch):
    corpus = torch.arange(N)  # token value = position
    loader = LMLoader(corpus, B, T, sequential=True, seed=1)
    loader.set_epoch(epoch)
    batches = list(loader)
    assert len(batches) == len(loader) > 0
    for batch in batches:
        assert batch.X.shape == batch.y.shape == (B, T)
        torch.testing.assert_close(batch.y, batch.X + 1)  # targets are the next tokens
    for first, second in itertools.pairwise(batches):
        torch.testing.assert_close(second.X[:, 0], first.X[:, -1] + 1)  # row b goes on where it stopped
    seen = torch.cat([batch.X for batch in batches], dim=1)  # (B, num_batches * T)
    offset, row_len = int(seen[0, 0]), int(seen[1, 0] - seen[0, 0])
    assert 0 <= offset <= T and row_len == (N - offset - 1) // B
    for b in range(B):  # each row is a contiguous stretch of the corpus, missing less than T at its end
        torch.testing.assert_close(seen[b], torch.arange(offset + b * row_len, offset + b * row_len + seen.shape[1]))
    assert row_len - seen.shape[1] < T


@pytest.mark.parametrize("sequential", [True, False])
def test_each_epoch_starts_at_a_random_offset_of_its_own(sequential):
    """The book's random offset in [0, T] (sequential) or [0, T) (random sampling): drawn again every epoch,
    so training sees every split of the text into subsequences, and the same again for the same epoch."""
    loader = LMLoader(torch.arange(N), B, T, sequential=sequential, seed=3)

    def offset(epoch):
        loader.set_epoch(epoch)
        return int(min(batch.X.min() for batch in loader))  # token value = position: the first one read

    offsets = [offset(epoch) for epoch in range(40)]
    assert set(offsets) == set(range(T + 1 if sequential else T))  # every offset comes up in 40 epochs
    assert offsets == [offset(epoch) for epoch in range(40)]


def test_random_batches_are_disjoint_aligned_subsequences_reshuffled_each_epoch():
    corpus = torch.arange(N)
    loader = LMLoader(corpus, B, T, sequential=False, seed=0)
    orders = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        X = torch.cat([batch.X for batch in loader])
        starts = X[:, 0]
        assert len(set(starts.tolist())) == len(starts)  # no subsequence twice
        assert len(set((starts % T).tolist())) == 1  # all aligned on one random offset
        torch.testing.assert_close(X, starts[:, None] + torch.arange(T))
        assert len(X) == (N - int(starts.min() % T) - 1) // T // B * B
        orders.append(starts)
    assert not torch.equal(orders[0][:5], orders[1][:5])
    loader.set_epoch(1)
    torch.testing.assert_close(torch.cat([batch.X for batch in loader])[:, 0], orders[0])  # reproducible per epoch


def test_lm_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        LMLoader(torch.zeros(4, 4, dtype=torch.long), 2, 2, sequential=True)
    with pytest.raises(ValueError, match="too short"):
        LMLoader(torch.arange(20), 4, 5, sequential=True)


@pytest.mark.parametrize("sequential, shortest", [(True, 2 * 5 + 5 + 1), (False, 2 * 5 + 5)])
def test_the_shortest_corpus_accepted_gives_a_minibatch_at_every_offset(sequential, shortest):
    """B T + T + 1 tokens (sequential: offsets up to T) or B T + T (random: up to T - 1), no more: one fewer is
    refused with what it needs (the check once asked for T more than any offset uses)."""
    loader = LMLoader(torch.arange(shortest), 2, 5, sequential=sequential)
    for epoch in range(30):  # every offset comes up
        loader.set_epoch(epoch)
        assert len(list(loader)) == len(loader) == 1
    with pytest.raises(ValueError, match=f"too short for one minibatch of 2 x 5 after a random offset \\(it needs "
                                         f"{shortest}\\); use a smaller batch size or number of steps"):
        LMLoader(torch.arange(shortest - 1), 2, 5, sequential=sequential)

"""The Transformer (D2L §10.7) and the Bahdanau decoder (D2L §10.4): blocks against torch's own
``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` with copied weights, the causal
mask, the key/value cache against a full recompute, greedy and beam search against searches that
recompute everything, eval mode in prediction, and the book's sizes and initialisation."""

import math

import pytest
import torch
from torch import nn

from divekit.data.text import Vocab
from divekit.decoding import beam_search, exhaustive_search, greedy_search
from divekit.models.registry import create_model
from divekit.models.seq2seq import translate
from divekit.models.transformer import TransformerConfig, TransformerDecoderBlock, TransformerEncoderBlock
from divekit.ops import fast, scratch

TWINS = [scratch, fast]
IDS = ["scratch", "fast"]
F64 = torch.float64


def small(name="transformer", impl="fast", seed=0, **overrides):
    torch.manual_seed(seed)
    sizes = dict(src_vocab_size=11, tgt_vocab_size=13)
    if name.startswith("transformer"):
        sizes.update(num_hiddens=16, ffn_num_hiddens=24, num_heads=4, num_layers=2)
    else:
        sizes.update(embed_size=8, num_hiddens=16, num_layers=2)
    return create_model(name, impl, **{**sizes, **overrides}).double().eval()


def copy_block_into_torch(block, decoder=False):
    """nn.TransformerEncoderLayer / DecoderLayer (post-norm, ReLU, batch first) holding ``block``'s weights."""
    d, H = block.ffn.dense1.in_features, (block.attention1 if decoder else block.attention).num_heads
    ffn = block.ffn.dense1.out_features
    kind = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    reference = kind(d, H, ffn, dropout=0.0, batch_first=True, norm_first=False).double().eval()
    names = {"linear1": "ffn.dense1", "linear2": "ffn.dense2", "norm1": "addnorm1.norm", "norm2": "addnorm2.norm",
             "norm3": "addnorm3.norm", "self_attn": "attention1" if decoder else "attention",
             "multihead_attn": "attention2"}
    ours = block.state_dict()
    state = {}
    for key in reference.state_dict():
        head, rest = key.split(".", 1)
        state[key] = ours[f"{names[head]}.{rest}"]
    reference.load_state_dict(state)
    return reference


@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_encoder_block_equals_torchs_encoder_layer_with_copied_weights(twin):
    torch.manual_seed(0)
    block = TransformerEncoderBlock(twin, 16, 24, 4, 0.0, bias=True).double().eval()
    reference = copy_block_into_torch(block)
    X = torch.randn(3, 6, 16, dtype=F64)
    valid_lens = torch.tensor([6, 2, 4])
    padding = torch.arange(6)[None] >= valid_lens[:, None]  # torch's key_padding_mask: True = left out
    expected = reference(X, src_key_padding_mask=padding)
    torch.testing.assert_close(block(X, valid_lens), expected)
    packing = twin.TokenPacking(valid_lens, 6)  # the real tokens only: the same numbers there
    torch.testing.assert_close(block(packing.pack(X), packing=packing), expected[~padding])


@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_decoder_block_equals_torchs_decoder_layer_with_a_causal_mask(twin):
    torch.manual_seed(1)
    block = TransformerDecoderBlock(twin, 16, 24, 4, 0.0, bias=True).double().eval()
    reference = copy_block_into_torch(block, decoder=True)
    X, memory = torch.randn(3, 5, 16, dtype=F64), torch.randn(3, 7, 16, dtype=F64)
    enc_valid_lens = torch.tensor([7, 3, 1])
    causal = torch.arange(1, 6).expand(3, 5)
    ours, _ = block(X, block.attention2.project_kv(memory, memory), enc_valid_lens, None, causal)
    theirs = reference(X, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.bool),
                       memory_key_padding_mask=torch.arange(7)[None] >= enc_valid_lens[:, None])
    torch.testing.assert_close(ours, theirs)


def source_and_target(B=3, K=6, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(4, 11, (B, K), generator=g)
    Y = torch.randint(4, 13, (B, T), generator=g)
    return X, Y, torch.tensor([6, 3, 1])[:B]


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_the_output_at_position_t_does_not_depend_on_later_decoder_inputs(impl):
    model = small(impl=impl)
    X, Y, valid = source_and_target()
    logits, _ = model(X, Y, valid)
    for t in range(Y.shape[1] - 1):
        changed = Y.clone()
        changed[:, t + 1:] = torch.randint(4, 13, changed[:, t + 1:].shape)
        new, _ = model(X, changed, valid)
        torch.testing.assert_close(new[:, :t + 1], logits[:, :t + 1])  # positions 0..t unchanged
        assert not torch.allclose(new[:, t + 1:], logits[:, t + 1:])  # and the later ones do see the change


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_the_source_padding_changes_nothing(impl):
    model = small(impl=impl)
    X, Y, valid = source_and_target()
    logits, _ = model(X, Y, valid)
    padded = X.clone()
    padded[1, 3:] = 1
    padded[2, 1:] = 7
    torch.testing.assert_close(model(padded, Y, valid)[0], logits)


@pytest.mark.parametrize("name", ["transformer", "bahdanau"])
@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_decoding_one_token_at_a_time_with_the_cache_equals_the_full_recompute(name, impl):
    """Teacher forcing all T positions at once and feeding them one by one through the state
    (the key/value cache; the GRU state) give the same logits: no step recomputes an earlier one,
    and every step sees its own position."""
    model = small(name, impl=impl)
    X, Y, valid = source_and_target()
    full, _ = model(X, Y, valid)
    state = model.decoder.init_state(model.encoder(X, valid), valid)
    steps = []
    for t in range(Y.shape[1]):
        logits, state = model.decoder(Y[:, t:t + 1], state)  # (B, 1, V)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    if name == "transformer":
        assert state.offset == Y.shape[1]
        assert all(k.shape == (3, 4, Y.shape[1], 4) for k, _ in state.self_kv)  # (B, H, T, Dh) per block
        two, three = model.decoder(Y[:, :2], model.decoder.init_state(model.encoder(X, valid), valid))
        rest, _ = model.decoder(Y[:, 2:], three)  # a prefix of 2, then 5 at once: still the same
        torch.testing.assert_close(torch.cat([two, rest], dim=1), full)


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_the_encoder_leaves_out_the_padding_after_the_longest_source(impl):
    """The encoder runs on the first max(valid_lens) positions only: no real position attends to the
    rest, so its output there equals that of the blocks run over every position."""
    model = small(impl=impl)
    X, _, valid = source_and_target()
    X = torch.cat([X, torch.ones(X.shape[0], 4, dtype=X.dtype)], dim=1)  # 4 more positions of padding
    K = int(valid.max())
    encoded = model.encoder(X, valid)
    assert encoded.shape == (X.shape[0], K, 16) and K < X.shape[1]
    everywhere = model.encoder.embed(X)
    for block in model.encoder.blocks:
        everywhere = block(everywhere, valid)  # (B, all positions, d)
    real = torch.arange(K)[None, :] < valid[:, None]  # (B, K)
    torch.testing.assert_close(encoded[real], everywhere[:, :K][real])
    assert model.encoder(X[:1, :2], None).shape == (1, 2, 16)  # without valid lengths: every position


def recompute_step(model, X, valid):
    """A decoding step without any cache: the whole prefix through the model again each time."""
    def step(tokens, prefix):
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # (K, t)
        K = prefix.shape[0]
        logits, _ = model(X.expand(K, -1), prefix, valid.expand(K))
        return torch.log_softmax(logits[:, -1], dim=-1), prefix

    return step, torch.empty(1, 0, dtype=torch.long), lambda prefix, idx: prefix[idx]


@pytest.mark.parametrize("name", ["transformer", "bahdanau"])
def test_greedy_and_beam_search_on_the_cache_equal_searches_that_recompute_everything(name):
    model = small(name, seed=3)
    X, _, valid = source_and_target(B=1)
    bos, eos, max_len = 2, 3, 4
    state = model.decoder.init_state(model.encoder(X, valid), valid)

    def cached_step(tokens, state):
        logits, state = model.decoder(tokens[:, None], state)
        return torch.log_softmax(logits[:, 0], dim=-1), state

    step, prefix, reorder = recompute_step(model, X, valid)
    with torch.no_grad():
        greedy = greedy_search(cached_step, state, bos, eos, max_len)
        assert greedy[0] == greedy_search(step, prefix, bos, eos, max_len)[0]
        assert greedy[1] == pytest.approx(greedy_search(step, prefix, bos, eos, max_len)[1])
        beam = beam_search(cached_step, state, model.decoder.reorder_state, bos, eos, max_len, beam_size=4)
        assert beam[0] == beam_search(step, prefix, reorder, bos, eos, max_len, beam_size=4)[0]
        # a beam as wide as the vocabulary finds the best sequence of all (D2L §9.8.2)
        wide = beam_search(cached_step, state, model.decoder.reorder_state, bos, eos, 3, beam_size=13 * 13)
        best = exhaustive_search(step, prefix, reorder, bos, eos, 3, vocab_size=13)
        assert wide[0] == best[0] and wide[1] == pytest.approx(best[1])


@pytest.mark.parametrize("name", ["transformer", "bahdanau"])
def test_translate_turns_dropout_off_and_reads_a_sentence_as_typed(name):
    torch.manual_seed(0)
    src = Vocab([["go", ".", "hi", "!"]] * 2, reserved_tokens=("<pad>", "<bos>", "<eos>"))
    tgt = Vocab([["va", "!", "salut"]] * 2, reserved_tokens=("<pad>", "<bos>", "<eos>"))
    model = small(name, dropout=0.5, src_vocab_size=len(src), tgt_vocab_size=len(tgt)).train()
    first = translate(model, "Go.", src, tgt, num_steps=6)
    assert model.training  # its mode as it was: translate ran in eval mode inside
    assert translate(model, "  go . ", src, tgt, num_steps=6) == first  # same tokens, and no dropout
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    # the same answer as a greedy search that recomputes everything in eval mode
    X = torch.tensor([[src["go"], src["."], src["<eos>"], 1, 1, 1]])
    step, prefix, _ = recompute_step(model.eval(), X, torch.tensor([3]))
    with torch.no_grad():
        tokens, _ = greedy_search(step, prefix, tgt["<bos>"], tgt["<eos>"], 6)
    assert first == " ".join(tgt.to_tokens(tokens[:-1] if tokens[-1] == tgt["<eos>"] else tokens))
    assert all(torch.equal(state_before[k], v) for k, v in model.state_dict().items())


def book_parameter_count(V_src, V_tgt, d=32, ffn=64, layers=2):
    """The book's Transformer, counted by hand: attention without biases, FFN and output with them."""
    attention, addnorm, ffn_params = 4 * d * d, 2 * d, d * ffn + ffn + ffn * d + d
    encoder = V_src * d + layers * (attention + 2 * addnorm + ffn_params)
    decoder = V_tgt * d + layers * (2 * attention + 3 * addnorm + ffn_params) + d * V_tgt + V_tgt
    return encoder + decoder


def test_the_books_transformer_has_the_books_parameters_and_initialisation():
    model = create_model("transformer", "fast", src_vocab_size=184, tgt_vocab_size=201)
    assert sum(p.numel() for p in model.parameters()) == book_parameter_count(184, 201)
    attention = model.encoder.blocks[0].attention
    assert attention.in_proj_bias is None and attention.out_proj.bias is None  # the book's use_bias=False
    bound = math.sqrt(6 / (32 + 32))  # Xavier for one (d, d) projection, as d2l's nn.Linear(d, d)
    for W in (*attention.in_proj_weight.chunk(3), attention.out_proj.weight):
        assert W.abs().max() <= bound and W.abs().max() > 0.9 * bound
    assert model.decoder.output.weight.abs().max() <= math.sqrt(6 / (32 + 201))
    embedding = model.encoder.embed.embedding.weight.detach()
    assert float(embedding.std()) == pytest.approx(1, abs=0.05)  # N(0, 1) embeddings


def test_presets_and_bad_configs():
    large = create_model("transformer-large", src_vocab_size=5, tgt_vocab_size=5)
    attention = large.encoder.blocks[0].attention
    assert (len(large.encoder.blocks), attention.embed_dim, attention.num_heads) == (4, 256, 8)
    assert large.encoder.blocks[0].ffn.dense1.out_features == 1024
    with pytest.raises(ValueError, match="--num-hiddens 30 must be divisible by --num-heads 4"):
        TransformerConfig(num_hiddens=30)
    with pytest.raises(ValueError, match="--activation must be one of relu, gelu, got 'tanh'"):
        TransformerConfig(activation="tanh")


@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_the_encoder_block_takes_berts_gelu_and_epsilon(twin):
    block = TransformerEncoderBlock(twin, 8, 16, 2, 0.0, activation="gelu", norm_eps=1e-12)
    assert isinstance(block.ffn.activation, twin.GELU) and block.addnorm1.norm.eps == 1e-12
    X = torch.randn(2, 3, 8)
    torch.testing.assert_close(block.ffn(X), block.ffn.dense2(nn.functional.gelu(block.ffn.dense1(X))))


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_attention_maps_are_recorded_when_asked(impl):
    model = small(impl=impl)
    X, Y, valid = source_and_target()
    model(X, Y, valid)
    assert model.encoder.attention_weights == [None, None]  # the fused kernel keeps no weights by default
    for module in model.modules():
        if hasattr(module, "record_weights"):
            module.record_weights = True
    model(X, Y, valid)
    enc = model.encoder.attention_weights[0]
    dec_self, dec_cross = (maps[1] for maps in model.decoder.attention_weights)
    assert enc.shape == (3, 4, 6, 6) and dec_self.shape == (3, 4, 7, 7) and dec_cross.shape == (3, 4, 7, 6)
    assert torch.all(enc[2, :, :, 1:] == 0) and torch.all(dec_cross[1, :, :, 3:] == 0)  # source padding
    assert torch.all(dec_self.triu(1) == 0)  # no look ahead
    torch.testing.assert_close(dec_self.sum(-1), torch.ones(3, 4, 7, dtype=F64))


def test_bahdanau_weights_per_step_skip_the_source_padding():
    model = small("bahdanau")
    X, Y, valid = source_and_target()
    model(X, Y, valid)
    weights = model.decoder.attention_weights
    assert weights.shape == (3, 7, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 7, dtype=F64))
    assert torch.all(weights[1, :, 3:] == 0) and torch.all(weights[2, :, 1:] == 0)

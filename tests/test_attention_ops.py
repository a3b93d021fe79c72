"""Attention primitives (D2L §10.1-§10.6): scratch against fast twins, and both against independent
references: plain softmax, a per-row loop, ``F.scaled_dot_product_attention`` and
``nn.MultiheadAttention`` with copied weights; masks at the edges and in low precision."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.checkpoint import checkpoint

from divekit.ops.fast import attention as fast
from divekit.ops.scratch import attention as scratch

F64 = torch.float64
TWINS = [scratch, fast]
TWIN_IDS = ["scratch", "fast"]


def assert_same_values_and_grads(f_ours, f_ref, *inputs, atol=1e-10, rtol=1e-8):
    """Outputs and input gradients (for a random output gradient) of two functions agree."""
    ours_in = [x.clone().requires_grad_() for x in inputs]
    ref_in = [x.clone().requires_grad_() for x in inputs]
    ours, ref = f_ours(*ours_in), f_ref(*ref_in)
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    grad_out = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, ours_in, grad_out), torch.autograd.grad(ref, ref_in, grad_out)):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def loop_masked_softmax(X, valid_lens):
    """Reference: each row (b, q) on its own, softmax over its first n keys, zeros after (and for n = 0)."""
    B, Q, K = X.shape
    rows = []
    for b in range(B):
        for q in range(Q):
            n = K if valid_lens is None else int(valid_lens[b] if valid_lens.dim() == 1 else valid_lens[b, q])
            n = max(0, min(n, K))
            rows.append(torch.cat([torch.softmax(X[b, q, :n], dim=0), X.new_zeros(K - n)]))
    return torch.stack(rows).reshape(B, Q, K)


def lengths(kind, B, Q, K):
    """valid_lens of one kind for (B, Q, K) scores: None, per row, per query, or per row with a 0."""
    g = torch.Generator().manual_seed(B * 100 + Q * 10 + K)
    if kind == "none":
        return None
    if kind == "rows":
        return torch.randint(1, K + 1, (B,), generator=g)
    if kind == "queries":
        return torch.randint(1, K + 1, (B, Q), generator=g)
    if kind == "rows_with_zero":
        return torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(0, K + 1, (B - 1,), generator=g)])
    if kind == "queries_with_zero":
        vl = torch.randint(0, K + 1, (B, Q), generator=g)
        vl[0, 0] = 0
        return vl
    raise ValueError(kind)


KINDS = ["none", "rows", "queries", "rows_with_zero", "queries_with_zero"]


# ----------------------------------------------------------------------------- twin conventions

def test_scratch_and_fast_export_the_same_names_and_signatures():
    assert sorted(scratch.__all__) == sorted(fast.__all__)
    for name in scratch.__all__:
        s, f = getattr(scratch, name), getattr(fast, name)
        if s is f:  # shared (TokenPacking)
            continue
        if inspect.isclass(s):
            assert inspect.signature(s.__init__) == inspect.signature(f.__init__), name
            assert inspect.signature(s.forward) == inspect.signature(f.forward), name
        else:
            assert inspect.signature(s) == inspect.signature(f), name
    from divekit.ops import fast as fast_ops, scratch as scratch_ops
    assert set(scratch.__all__) <= set(scratch_ops.__all__) and set(fast.__all__) <= set(fast_ops.__all__)


def test_multi_head_attention_takes_a_prefix_of_torchs_constructor_arguments():
    torch_params = list(inspect.signature(nn.MultiheadAttention.__init__).parameters.values())
    for twin in TWINS:
        ours = list(inspect.signature(twin.MultiHeadAttention.__init__).parameters.values())
        assert [(p.name, p.default) for p in ours] == [(p.name, p.default) for p in torch_params[:len(ours)]]


# ----------------------------------------------------------------------------- masks and masked softmax

def test_valid_lens_to_mask_per_row_and_per_query():
    mask = scratch.valid_lens_to_mask(torch.tensor([2, 0]), 2, 2, 3)
    assert mask.tolist() == [[[True, True, False], [True, True, False]], [[False] * 3, [False] * 3]]
    mask = scratch.valid_lens_to_mask(torch.tensor([[1, 3], [0, 2]]), 2, 2, 3)
    assert mask.tolist() == [[[True, False, False], [True, True, True]], [[False] * 3, [True, True, False]]]
    assert mask.dtype == torch.bool


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_matches_a_per_row_loop_in_values_and_grads(twin, kind):
    X = torch.randn(3, 4, 5, dtype=F64)
    vl = lengths(kind, 3, 4, 5)
    assert_same_values_and_grads(lambda x: twin.masked_softmax(x, vl), lambda x: loop_masked_softmax(x, vl), X)


@settings(max_examples=40, deadline=None)  # K on both sides of 16, where the fast twin pads short rows
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 20), st.sampled_from(KINDS[1:]), st.integers(0, 2**16))
def test_masked_softmax_twins_agree_on_random_shapes(B, Q, K, kind, seed):
    X = torch.randn(B, Q, K, dtype=F64, generator=torch.Generator().manual_seed(seed)) * 10
    vl = lengths(kind if B > 1 or "zero" not in kind else "rows", B, Q, K)
    assert_same_values_and_grads(lambda x: scratch.masked_softmax(x, vl), lambda x: fast.masked_softmax(x, vl), X)
    torch.testing.assert_close(scratch.masked_softmax(X, vl), loop_masked_softmax(X, vl), atol=1e-12, rtol=0)


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_of_fully_valid_rows_is_the_plain_softmax(twin):
    X = torch.randn(2, 3, 4, dtype=F64) * 100
    torch.testing.assert_close(twin.masked_softmax(X, None), torch.softmax(X, -1))
    torch.testing.assert_close(twin.masked_softmax(X, torch.tensor([4, 4])), torch.softmax(X, -1))
    torch.testing.assert_close(twin.masked_softmax(X, torch.tensor([9, 7])), torch.softmax(X, -1))  # longer than K


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_gives_exact_zeros_and_zero_rows_whatever_the_padding_holds(twin):
    vl = torch.tensor([[2, 0, 4], [1, 3, 0]])
    X = torch.randn(2, 3, 4, dtype=F64)
    mask = scratch.valid_lens_to_mask(vl, 2, 3, 4)
    garbage = X.masked_fill(~mask, math.inf)  # inf (or any huge score) in the padding must not leak
    for scores in (X, garbage):
        scores = scores.clone().requires_grad_()
        W = twin.masked_softmax(scores, vl)
        assert torch.all(W[~mask] == 0)
        assert torch.all(W[0, 1] == 0) and torch.all(W[1, 2] == 0)  # valid length 0: no weight, not 1/K
        torch.testing.assert_close(W.sum(-1), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=F64))
        (grad,) = torch.autograd.grad((W * torch.randn_like(W)).sum(), scores)
        assert torch.isfinite(grad).all() and torch.all(grad[~mask] == 0)
    torch.testing.assert_close(twin.masked_softmax(garbage, vl), twin.masked_softmax(X, vl))


@pytest.mark.parametrize("K", [4, 20])  # both sides of the fast twin's padding of short rows to 16 keys
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_without_a_mask_is_torchs_even_at_extreme_scores(twin, K):
    lowest = torch.finfo(torch.float32).min  # what masks fill in: padding must not tie with it
    X = torch.zeros(1, 4, K)
    X[0, 0] = lowest  # every score the minimum: uniform weights
    X[0, 1, 1:] = lowest  # one ordinary score among minima: all the weight on it
    X[0, 2, :2] = -math.inf  # -inf beside finite scores: weight 0
    X[0, 3] = -math.inf  # every score -inf: NaN, as torch
    torch.testing.assert_close(twin.masked_softmax(X), torch.softmax(X, -1), equal_nan=True)


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_leaves_the_callers_scores_alone(twin):
    X = torch.randn(2, 3, 4)
    before = X.clone()
    twin.masked_softmax(X, torch.tensor([1, 0]))
    assert torch.equal(X, before)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_masked_softmax_in_low_precision_has_no_nan_and_zero_empty_rows(twin, dtype):
    # d2l's -1e6 fill is -inf in float16: an empty row becomes softmax(-inf, ...) = NaN
    X = (torch.randn(2, 3, 6) * 30).to(dtype).requires_grad_()
    vl = torch.tensor([[0, 3, 6], [1, 0, 2]])
    W = twin.masked_softmax(X, vl)
    assert W.dtype == dtype and torch.isfinite(W).all()
    assert torch.all(W[0, 0] == 0) and torch.all(W[1, 1] == 0)
    assert torch.all(W[~scratch.valid_lens_to_mask(vl, 2, 3, 6)] == 0)
    torch.testing.assert_close(W.float(), loop_masked_softmax(X.detach().float(), vl), atol=1e-2, rtol=1e-2)
    W.sum().backward()
    assert torch.isfinite(X.grad).all()


def test_masked_softmax_gradcheck():
    X = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    for vl in (None, torch.tensor([3, 0]), torch.tensor([[1, 0, 4], [2, 3, 0]])):
        assert torch.autograd.gradcheck(lambda x: scratch.masked_softmax(x, vl), (X,))


# ----------------------------------------------------------------------------- additive and dot-product attention

def books_example(D):
    """D2L §10.3.2-§10.3.3: keys all equal, so the weights are uniform over the valid keys and the
    output is the mean of the first valid_len values: [2, 3, 4, 5] for 2 keys, [10, 11, 12, 13] for 6."""
    torch.manual_seed(0)
    queries, keys = torch.normal(0, 1, (2, 1, D)), torch.ones((2, 10, 2))
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    return queries, keys, values, torch.tensor([2, 6]), torch.tensor([[[2.0, 3, 4, 5]], [[10.0, 11, 12, 13]]])


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_attention_reproduces_the_books_examples(twin):
    queries, keys, values, vl, expected = books_example(20)
    additive = twin.AdditiveAttention(key_size=2, query_size=20, num_hiddens=8, dropout=0.1).eval()
    torch.testing.assert_close(additive(queries, keys, values, vl), expected)
    assert additive.attention_weights.shape == (2, 1, 10)
    torch.testing.assert_close(additive.attention_weights[1, 0, :6], torch.full((6,), 1 / 6))
    queries, keys, values, vl, expected = books_example(2)
    dot = twin.DotProductAttention(dropout=0.5).eval()
    torch.testing.assert_close(dot(queries, keys, values, vl), expected)


def additive_by_hand(layer, queries, keys, values, valid_lens):
    """Reference: a(q, k) = w_v . tanh(W_q q + W_k k) for each pair, in loops (D2L §10.3.2)."""
    W_q, W_k, w_v = layer.W_q.weight, layer.W_k.weight, layer.w_v.weight[0]
    B, Q, K = queries.shape[0], queries.shape[1], keys.shape[1]
    scores = torch.stack([w_v @ torch.tanh(W_q @ queries[b, q] + W_k @ keys[b, k])
                          for b in range(B) for q in range(Q) for k in range(K)]).reshape(B, Q, K)
    return loop_masked_softmax(scores, valid_lens) @ values


def qkv(B=2, Q=3, K=5, D=4, V=3, dtype=F64):
    g = torch.Generator().manual_seed(7)
    return (torch.randn(B, Q, D, dtype=dtype, generator=g), torch.randn(B, K, D, dtype=dtype, generator=g),
            torch.randn(B, K, V, dtype=dtype, generator=g))


@pytest.mark.parametrize("kind", KINDS)
def test_additive_attention_twins_agree_with_each_other_and_with_loops(kind):
    queries, keys, values = qkv(Q=3, K=5, D=4)
    queries = torch.randn(2, 3, 6, dtype=F64)  # queries and keys of different sizes
    vl = lengths(kind, 2, 3, 5)
    s = scratch.AdditiveAttention(4, 6, 7, dropout=0.0).double()
    f = fast.AdditiveAttention(4, 6, 7, dropout=0.0).double()
    f.load_state_dict(s.state_dict())
    assert_same_values_and_grads(lambda *a: s(*a, vl), lambda *a: f(*a, vl), queries, keys, values)
    torch.testing.assert_close(s(queries, keys, values, vl), additive_by_hand(s, queries, keys, values, vl))
    torch.testing.assert_close(s.attention_weights, f.attention_weights)
    assert s.attention_weights.shape == (2, 3, 5) and not s.attention_weights.requires_grad


@pytest.mark.parametrize("kind", KINDS)
def test_dot_product_attention_matches_sdpa_and_its_twin(kind):
    queries, keys, values = qkv()
    vl = lengths(kind, 2, 3, 5)
    mask = None if vl is None else scratch.valid_lens_to_mask(vl, 2, 3, 5)
    s, f = scratch.DotProductAttention(0.0), fast.DotProductAttention(0.0)
    assert_same_values_and_grads(lambda *a: s(*a, vl), lambda *a: F.scaled_dot_product_attention(*a, attn_mask=mask),
                                 queries, keys, values)
    assert_same_values_and_grads(lambda *a: f(*a, vl), lambda *a: s(*a, vl), queries, keys, values)
    # and against the book's formula with the per-row loop for the weights
    weights = loop_masked_softmax(queries @ keys.transpose(1, 2) / math.sqrt(4), vl)
    torch.testing.assert_close(s(queries, keys, values, vl), weights @ values)


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_dot_product_attention_records_weights_only_when_asked(twin):
    queries, keys, values = qkv()
    vl = torch.tensor([[1, 2, 0], [5, 4, 3]])
    layer = twin.DotProductAttention(0.0)
    fused = layer(queries, keys, values, vl)
    assert layer.attention_weights is None
    layer.record_weights = True
    recorded = layer(queries, keys, values, vl)
    torch.testing.assert_close(recorded, fused)  # the fast twin's slow path gives the fused kernel's answer
    torch.testing.assert_close(layer.attention_weights, loop_masked_softmax(queries @ keys.transpose(1, 2) / 2, vl))
    assert torch.all(layer.attention_weights[0, 2] == 0) and torch.all(recorded[0, 2] == 0)


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_dot_product_attention_in_float16_scales_before_the_product(twin, record):
    # q . k = 102,400 is inf in float16 (largest 65,504); q . k / sqrt(64) = 12,800 is not
    q = torch.full((1, 1, 64), 40.0, dtype=torch.float16)
    k = torch.cat([torch.full((1, 1, 64), 40.0), torch.full((1, 1, 64), 39.0)], dim=1).half()
    v = torch.randn(1, 2, 4, generator=torch.Generator().manual_seed(0)).half()
    layer = twin.DotProductAttention(0.0)
    layer.record_weights = record  # the fast twin's own steps, not SDPA's
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(layer(q, k, v).float(), expected, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_attention_dropout_acts_in_training_only(twin, record):
    torch.manual_seed(0)
    queries, keys, values = qkv(dtype=torch.float32)
    layers = (twin.DotProductAttention(0.5), twin.AdditiveAttention(4, 4, 8, 0.5), twin.MultiHeadAttention(4, 2, 0.5))
    for layer in layers:
        layer.record_weights = record
        v = values if not isinstance(layer, twin.MultiHeadAttention) else torch.randn(2, 5, 4)
        no_dropout = layer.eval()(queries, keys, v)
        assert torch.equal(layer(queries, keys, v), no_dropout)  # eval: deterministic, no dropout
        layer.train()
        assert not torch.allclose(layer(queries, keys, v), no_dropout)
        if record:  # recorded weights are the ones before dropout: rows still sum to 1
            torch.testing.assert_close(layer.attention_weights.sum(-1), torch.ones(layer.attention_weights.shape[:-1]))


def test_fast_attention_leaves_dropout_to_sdpa_off_the_cpu_only(monkeypatch):
    """On a CPU, training with attention dropout takes the unfused steps; on another device (here
    ``meta``, which has shapes only) SDPA gets the dropout to apply in its fused kernel."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(*args, **kwargs):
        calls.append(kwargs.get("dropout_p", 0.0))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(fast.F, "scaled_dot_product_attention", recording)
    layer = fast.MultiHeadAttention(8, 2, dropout=0.25).train()
    X, valid_lens = torch.randn(2, 5, 8), torch.tensor([3, 5])
    layer(X, X, X, valid_lens)
    assert calls == []
    layer.eval()(X, X, X, valid_lens)
    assert calls == [0.0]
    layer.to("meta").train()
    out = layer(X.to("meta"), X.to("meta"), X.to("meta"), valid_lens.to("meta"))
    assert calls == [0.0, 0.25] and out.shape == (2, 5, 8)


@pytest.mark.parametrize("T", [3, 5, 7, 10])  # 5 x 5, 7 x 7 of 8 features: padded to BLAS's size; 3 x 3 (would need
# 45 features) and 10 x 10 (BLAS's already): not
def test_fast_attention_pads_small_heads_to_blas_size_with_the_same_outputs_grads_and_dropout(T, monkeypatch):
    """Heads whose products PyTorch's CPU bmm would run in its scalar loop get zero features first: the
    outputs, the gradients and the dropout draws (one seed, one stream) are those of the plain steps."""
    widths = []
    matmul = torch.Tensor.__matmul__

    def recording(a, b):
        widths.append(a.shape[-1])
        return matmul(a, b)

    def run(threshold):
        monkeypatch.setattr(fast, "BMM_LOOP_BELOW", threshold)
        torch.manual_seed(3)
        layer = fast.MultiHeadAttention(32, 4, dropout=0.2).double().train()
        X = torch.randn(6, T, 32, dtype=torch.float64, requires_grad=True)
        out = layer(X, X, X, torch.tensor([T, 1, 2, T, T - 1, 3]).clamp(max=T))
        out.backward(torch.randn_like(out))
        return out, X.grad, {name: p.grad for name, p in layer.named_parameters()}

    monkeypatch.setattr(torch.Tensor, "__matmul__", recording)
    padded = run(400)
    scores_width = widths[0]                                                    # q (.., T, D') @ k^T
    plain = run(0)
    assert scores_width == {3: 8, 5: 16, 7: 9, 10: 8}[T]
    torch.testing.assert_close(padded[0], plain[0])
    torch.testing.assert_close(padded[1], plain[1])
    for name, grad in padded[2].items():
        torch.testing.assert_close(grad, plain[2][name], msg=name)


def plain_dropped_attention(q, k, v, mask, p):
    """softmax(q k^T / sqrt(D)) with dropout times v by autograd's steps, the mask drawn as fast.Dropout draws."""
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)
    weights = torch.softmax(scores.masked_fill(~mask, torch.finfo(q.dtype).min), -1).masked_fill(~mask, 0.0)
    return (weights * torch.rand_like(weights).ge_(p).mul_(1 / (1 - p))) @ v


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("Q, K, D, V", [(5, 5, 8, 8), (7, 7, 8, 8), (3, 9, 4, 6), (10, 12, 8, 8), (5, 5, 8, 5),
                                        (4, 20, 8, 8)])
def test_fast_attentions_dropout_node_equals_autograds_steps_bit_for_bit(Q, K, D, V, dtype):
    """The CPU's training path with attention dropout is one autograd node with a backward of its own:
    outputs and gradients those of the plain steps (the same path through autograd) from one seed, bit
    for bit (padded for BLAS or not, values of another width, a row with no valid key, keys over 16),
    and gradcheck passes."""
    g = torch.Generator().manual_seed(Q * K)
    q, k = torch.randn(3, 2, Q, D, dtype=dtype, generator=g), torch.randn(3, 2, K, D, dtype=dtype, generator=g)
    v = torch.randn(3, 2, K, V, dtype=dtype, generator=g)
    mask = fast.valid_lens_to_mask(torch.tensor([0, K - 1, K]), 3, Q, K)[:, None]  # (3, 1, Q, K)
    grad = torch.randn(3, 2, Q, V, dtype=dtype, generator=g)
    dropout = fast.Dropout(0.3).train()

    def plain_steps(*inputs):  # _scaled_dot_product without the node: its path that keeps the weights
        return fast._scaled_dot_product(*inputs, mask, dropout, True)[0]

    results = []
    for attend in (plain_steps, lambda *inputs: fast._DroppedAttention.apply(*inputs, mask, 0.3)[..., :V]):
        inputs = [x.clone().requires_grad_() for x in (q, k, v)]
        torch.manual_seed(1)
        out = attend(*inputs)
        results.append((out, *torch.autograd.grad(out, inputs, grad)))
    assert (results[1][0][0] == 0).all()  # no valid key: output 0, as the plain steps
    for expected, got in zip(*results):
        assert torch.equal(got, expected)
    torch.manual_seed(1)
    torch.testing.assert_close(results[1][0], plain_dropped_attention(q, k, v, mask, 0.3))  # the formula

    def seeded(*inputs):
        torch.manual_seed(5)
        return fast._DroppedAttention.apply(*inputs, mask, 0.3)[..., :V]

    if dtype == F64:  # gradcheck's finite differences need float64
        assert torch.autograd.gradcheck(seeded, [x.clone().requires_grad_() for x in (q, k, v)])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # torch's forward-AD set-up, on first use
def test_fast_attentions_dropout_node_leaves_to_the_plain_steps_what_it_does_not_implement():
    """Where the node would not give the plain steps' numbers, or cannot run (autocast, torch.func,
    forward-mode AD, another dropout, inputs multiplied in another layout), the layer takes the plain
    steps: the same output and gradients as with its weights kept (the plain steps' path), and its
    output can be changed in place either way."""
    torch.manual_seed(0)
    mha, dot = fast.MultiHeadAttention(32, 4, dropout=0.3).train(), fast.DotProductAttention(0.3).train()
    X, valid_lens = torch.randn(3, 12, 32), torch.tensor([12, 2, 4])  # 12 x 12 x 8 heads: not padded
    keys = torch.randn(3, 12, 32).view(3, 12, 4, 8).transpose(1, 2)  # (B, H, K, Dh), not contiguous
    q, k, v = torch.randn(3, 2, 12, 8).unbind()

    def run(layer, record, attend, *inputs):
        layer.record_weights = record
        inputs = [x.clone().requires_grad_() for x in inputs]
        torch.manual_seed(1)
        out = attend(*inputs)
        return [out, *torch.autograd.grad(out.float().sum(), inputs)]

    cases = {
        "non-contiguous heads": (mha, lambda X, k: mha.attend(X, k, k, valid_lens), X, keys),
        "autocast": (dot, lambda q, k, v: _autocast(lambda: dot(q, k, v)), q, k, v),
        "in-place dropout": (mha, lambda X: _with(mha.dropout, "inplace", True, lambda: mha(X, X, X, valid_lens)), X),
        "a hook on the dropout": (mha, lambda X: _hooked(mha.dropout, lambda: mha(X, X, X, valid_lens)), X),
        "non-reentrant checkpoint": (mha, lambda X: checkpoint(lambda x: mha(x, x, x, valid_lens), X,
                                                               use_reentrant=False), X),
        "one tensor as q, k and v": (dot, lambda q: dot(q, q, q), q),
        "in-place on the output": (dot, lambda q, k, v: dot(q, k, v).mul_(2), q, k, v),  # 12 x 12 x 8: not padded
    }
    for name, (layer, attend, *inputs) in cases.items():
        for got, expected in zip(run(layer, False, attend, *inputs), run(layer, True, attend, *inputs)):
            assert torch.equal(got, expected), name

    mha.record_weights = False
    torch.manual_seed(1)
    grads = torch.func.grad(lambda X: mha(X, X, X, valid_lens).sum())(X)
    torch.manual_seed(1)
    X_ = X.clone().requires_grad_()
    mha(X_, X_, X_, valid_lens).sum().backward()
    assert torch.equal(grads, X_.grad)
    with torch.autograd.forward_ad.dual_level():
        torch.manual_seed(1)
        dual = torch.autograd.forward_ad.make_dual(X, torch.ones_like(X))
        tangent = torch.autograd.forward_ad.unpack_dual(mha(dual, dual, dual, valid_lens)).tangent
    assert tangent is not None and tangent.shape == X.shape


def _autocast(run):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return run()


def _hooked(module, run):
    handle = module.register_forward_hook(lambda module, inputs, output: output * 0.5)
    try:
        return run()
    finally:
        handle.remove()


def _with(obj, name, value, run):
    before = getattr(obj, name)
    setattr(obj, name, value)
    try:
        return run()
    finally:
        setattr(obj, name, before)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("T, packed, masked", [(5, False, True), (7, False, True), (10, False, True), (3, False, True),
                                               (12, False, False), (0, False, False), (6, True, True), (9, True, True)])
def test_fast_self_attention_node_equals_the_plain_steps_bit_for_bit(T, packed, masked, dtype):
    """Multi-head self-attention in training is one node from the projections to the merged heads:
    output and every gradient equal those of the plain steps through autograd (the layer with its weights
    kept) bit for bit, heads padded for BLAS or not (T = 5, 7 of 8 features), with valid lengths, a
    sequence with none, no mask, and on packed tokens (BERT's path)."""
    torch.manual_seed(0)
    layer = fast.MultiHeadAttention(32, 4, dropout=0.2, bias=True).to(dtype).train()
    X = torch.randn(3, T, 32, dtype=dtype)
    valid_lens = torch.tensor([T, 0 if not packed else 1, max(T - 2, 1)]) if masked else None
    packing = fast.TokenPacking(valid_lens, T) if packed else None
    inputs = packing.pack(X) if packed else X
    results = []
    for record in (True, False):
        layer.record_weights = record
        layer.zero_grad()
        x = inputs.clone().requires_grad_()
        torch.manual_seed(1)
        out = layer(x, x, x, None if packed else valid_lens, packing=packing)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape))
        cache = [] if packed else list(layer.self_attend(X, valid_lens)[1])  # the keys and values (B, H, T, Dh)
        results.append([out, x.grad, *(p.grad for p in layer.parameters()), *cache])
    for expected, got in zip(*results):
        assert torch.equal(got, expected)


DROPOUT_NODES = {"_DroppedAttentionBackward", "_DroppedSelfAttentionBackward"}


def test_fast_attentions_dropout_nodes_run_in_cpu_training_only_and_refuse_a_second_derivative():
    layer = fast.MultiHeadAttention(8, 2, dropout=0.25)
    X, valid_lens = torch.randn(2, 5, 8, requires_grad=True), torch.tensor([3, 5])

    def nodes(module, X=X, Y=None):  # self-attention of X, or X's attention over Y
        seen, stack = {}, [module(X, *((X, X) if Y is None else (Y, Y)), valid_lens).grad_fn]
        while stack:
            node = stack.pop()
            if node is not None and id(node) not in seen:
                seen[id(node)] = node  # kept: a freed wrapper's id could come back
                stack.extend(n for n, _ in node.next_functions)
        return {type(node).__name__ for node in seen.values()} & DROPOUT_NODES

    Y = torch.randn(2, 5, 8)
    assert nodes(layer.train()) == {"_DroppedSelfAttentionBackward"}
    assert nodes(layer, X, Y) == {"_DroppedAttentionBackward"}  # attention over another sequence
    assert nodes(layer.eval()) == nodes(layer, X, Y) == set()  # SDPA
    layer.train().record_weights = True
    assert nodes(layer) == nodes(layer, X, Y) == set()  # the weights are kept: the plain steps
    layer.record_weights = False
    assert nodes(layer.bfloat16(), X.detach().bfloat16().requires_grad_()) == set()
    layer.float()
    out = layer(X, X, X, valid_lens)
    with pytest.raises(RuntimeError, match="no second derivative.*record_weights = True"):
        torch.autograd.grad(out.sum(), X, create_graph=True)
    for X_, Y_ in ((X, None), (X, Y)):  # hvp: an error, not zeros (as once_differentiable gave)
        with pytest.raises(RuntimeError, match="no second derivative"):
            torch.autograd.functional.hvp(lambda x: layer(x, *((x, x) if Y_ is None else (Y_, Y_)), valid_lens)
                                          .pow(2).sum(), X_.detach(), torch.ones_like(X_))
    layer.record_weights = True  # the plain steps: a second derivative
    _, hvp = torch.autograd.functional.hvp(lambda x: layer(x, x, x, valid_lens).pow(2).sum(), X.detach(),
                                           torch.ones_like(X))
    assert hvp.abs().sum() > 0


@pytest.mark.parametrize("Q, K, V, padded", [(1, 10, 32, True), (1, 10, 8, False), (2, 10, 32, False), (0, 3, 4, False)])
def test_additive_attentions_weighted_sum_pads_small_values_to_blas_size_with_the_same_numbers(Q, K, V, padded,
                                                                                               monkeypatch):
    """A Bahdanau decoder's step (one query, 10 keys, 32 features: 320 multiply-adds) gets its values
    padded to 40 features for BLAS; 8 features (would need 40) and two queries (640, BLAS's) are not."""
    shapes = []
    bmm = torch.bmm
    monkeypatch.setattr(fast.torch, "bmm", lambda a, b: shapes.append(b.shape[-1]) or bmm(a, b))
    weights = torch.rand(4, Q, K, dtype=torch.float64, requires_grad=True)
    values = torch.randn(4, K, V, dtype=torch.float64, requires_grad=True)
    out = fast._weighted_sum(weights, values)
    assert shapes == [40 if padded else V]
    expected = weights.detach() @ values.detach()
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(weights.grad, grad @ values.detach().transpose(1, 2))
    torch.testing.assert_close(values.grad, weights.detach().transpose(1, 2) @ grad)


@pytest.mark.parametrize("Q, K", [(0, 4), (3, 0), (0, 0)])
def test_fast_attention_of_no_queries_or_no_keys_is_empty_or_zero(Q, K):
    layer = fast.DotProductAttention(0.1).train()
    layer.record_weights = True
    out = layer(torch.randn(2, Q, 8), torch.randn(2, K, 8), torch.randn(2, K, 8))
    assert out.shape == (2, Q, 8) and not out.isnan().any()


def test_scratch_attention_layers_pass_gradcheck():
    queries, keys, values = qkv(B=2, Q=2, K=3, D=4, V=2)
    vl = torch.tensor([[1, 0], [3, 2]])
    for layer in (scratch.DotProductAttention(0.0), scratch.AdditiveAttention(4, 4, 3, 0.0).double()):
        inputs = tuple(t.clone().requires_grad_() for t in (queries, keys, values))
        assert torch.autograd.gradcheck(lambda *a: layer(*a, vl), inputs)
    mha = scratch.MultiHeadAttention(4, 2).double()
    nn.init.normal_(mha.in_proj_bias)
    nn.init.normal_(mha.out_proj.bias)
    values = torch.randn(2, 3, 4, dtype=F64)
    inputs = tuple(t.clone().requires_grad_() for t in (queries, keys, values))
    for vl in (None, torch.tensor([2, 0]), torch.tensor([[1, 0], [3, 2]])):
        assert torch.autograd.gradcheck(lambda *a: mha(*a, vl), inputs)


# ----------------------------------------------------------------------------- multi-head attention

def copy_into_torch(layer, **kwargs):
    reference = nn.MultiheadAttention(layer.embed_dim, layer.num_heads, batch_first=True, **kwargs).double().eval()
    reference.load_state_dict(layer.state_dict())
    return reference


MHA_CASES = {  # name: (Q, K, valid_lens, key_padding_mask, attn_mask) for nn.MultiheadAttention (True = masked out)
    "no mask": (4, 4, None, None, None),
    "key padding": (3, 5, torch.tensor([5, 2]),
                    ~torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool), None),
    "causal": (4, 4, torch.arange(1, 5).repeat(2, 1), None, torch.ones(4, 4, dtype=torch.bool).triu(1)),
    "causal and padding": (4, 4, torch.arange(1, 5).clamp(max=torch.tensor([[4], [2]])),
                           ~torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool),
                           torch.ones(4, 4, dtype=torch.bool).triu(1)),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", MHA_CASES, ids=list(MHA_CASES))
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_multi_head_attention_equals_torchs_with_copied_weights(twin, case, bias):
    Q, K, vl, key_padding_mask, attn_mask = MHA_CASES[case]
    torch.manual_seed(0)
    layer = twin.MultiHeadAttention(8, 2, bias=bias).double().eval()
    if bias:  # non-zero biases, so a bias in the wrong place shows
        nn.init.normal_(layer.in_proj_bias)
        nn.init.normal_(layer.out_proj.bias)
    reference = copy_into_torch(layer, bias=bias)
    queries, keys, values = (torch.randn(2, n, 8, dtype=F64) for n in (Q, K, K))
    if Q == K:
        keys = values = queries  # self-attention (the fast twin's fused projection)
    layer.record_weights = True
    ours = layer(queries, keys, values, vl)
    theirs, their_weights = reference(queries, keys, values, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                      need_weights=True, average_attn_weights=True)
    torch.testing.assert_close(ours, theirs)
    assert layer.attention_weights.shape == (2, 2, Q, K)
    torch.testing.assert_close(layer.attention_weights.mean(1), their_weights)


def test_multi_head_attention_starts_as_torchs_does():
    for bias in (True, False):
        states = []
        for make in (scratch.MultiHeadAttention, fast.MultiHeadAttention,
                     lambda *a, **k: nn.MultiheadAttention(*a, **k, batch_first=True)):
            torch.manual_seed(3)
            states.append(make(12, 3, bias=bias).state_dict())
        assert states[0].keys() == states[1].keys() == states[2].keys()
        for key in states[2]:
            torch.testing.assert_close(states[0][key], states[2][key], atol=0, rtol=0)
            torch.testing.assert_close(states[1][key], states[2][key], atol=0, rtol=0)


def test_additive_attention_twins_start_alike_and_like_nn_linear():
    states = []
    for twin in TWINS:
        torch.manual_seed(5)
        states.append(twin.AdditiveAttention(3, 4, 6, 0.0).state_dict())
    shapes = {k: tuple(v.shape) for k, v in states[0].items()}
    assert shapes == {"W_k.weight": (6, 3), "W_q.weight": (6, 4), "w_v.weight": (1, 6)}
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], atol=0, rtol=0)
    torch.manual_seed(5)
    torch.testing.assert_close(states[0]["W_k.weight"], nn.Linear(3, 6, bias=False).weight.detach())


@pytest.mark.parametrize("self_attention", [True, False])
def test_multi_head_attention_twins_share_state_dicts_outputs_and_gradients(self_attention):
    torch.manual_seed(1)
    s, f = scratch.MultiHeadAttention(8, 4).double(), fast.MultiHeadAttention(8, 4).double()
    for src, dst in ((s, f), (f, s)):  # both ways
        nn.init.normal_(src.in_proj_bias)
        dst.load_state_dict(src.state_dict())
        queries, keys, values = (torch.randn(3, n, 8, dtype=F64) for n in (4, 6, 6))
        vl = torch.tensor([[1, 0, 6, 3], [2, 2, 2, 2], [6, 5, 4, 0]])
        if self_attention:
            vl = vl.clamp(max=4)
            inputs = (queries,)
            call_src, call_dst = (lambda x: src(x, x, x, vl)), (lambda x: dst(x, x, x, vl))
        else:
            inputs = (queries, keys, values)
            call_src, call_dst = (lambda *a: src(*a, vl)), (lambda *a: dst(*a, vl))
        assert_same_values_and_grads(call_dst, call_src, *inputs)
        src.zero_grad()
        dst.zero_grad()
        call_src(*inputs).square().sum().backward()
        call_dst(*inputs).square().sum().backward()
        for (name, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
            assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
            torch.testing.assert_close(q.grad, p.grad, atol=1e-10, rtol=1e-8, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_multi_head_attention_with_an_empty_row_in_low_precision(twin, dtype):
    torch.manual_seed(0)
    layer = twin.MultiHeadAttention(8, 2)
    nn.init.normal_(layer.out_proj.bias)
    X = torch.randn(2, 3, 8) * 20
    vl = torch.tensor([0, 2])
    reference = layer(X, X, X, vl)
    torch.testing.assert_close(reference[0], layer.out_proj.bias.detach().expand(3, 8))  # no key: 0 attention output
    for record in (False, True):
        layer.record_weights = record
        low = layer.to(dtype)(X.to(dtype), X.to(dtype), X.to(dtype), vl)
        assert low.dtype == dtype and torch.isfinite(low).all()
        torch.testing.assert_close(low.float(), reference, atol=0.1, rtol=0.05)
        layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision
        mixed = layer(X, X, X, vl)
    assert mixed.dtype == torch.bfloat16 and torch.isfinite(mixed).all()  # the projections' bf16, biases too
    torch.testing.assert_close(mixed.float(), reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_a_key_value_cache_built_with_project_kv_gives_the_full_causal_attention(twin, bias):
    """Feeding positions one at a time, each query attending over the cached projections of the
    positions so far, gives the outputs of one causal pass over the whole sequence (and of
    nn.MultiheadAttention with a causal mask)."""
    torch.manual_seed(4)
    layer = twin.MultiHeadAttention(8, 2, bias=bias).double().eval()
    if bias:
        nn.init.normal_(layer.in_proj_bias)
        nn.init.normal_(layer.out_proj.bias)
    X = torch.randn(3, 5, 8, dtype=F64)
    causal = torch.arange(1, 6).repeat(3, 1)  # (B, T): query t sees keys 0..t
    full = layer(X, X, X, causal)
    reference = copy_into_torch(layer, bias=bias)(X, X, X, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1))[0]
    torch.testing.assert_close(full, reference)
    k_cache = v_cache = None
    steps = []
    for t in range(5):
        k, v = layer.project_kv(X[:, t:t + 1], X[:, t:t + 1])  # (B, H, 1, Dh): only the new position
        assert k.shape == v.shape == (3, 2, 1, 4)
        k_cache = k if k_cache is None else torch.cat([k_cache, k], dim=2)
        v_cache = v if v_cache is None else torch.cat([v_cache, v], dim=2)
        steps.append(layer.attend(X[:, t:t + 1], k_cache, v_cache))  # every cached key is in the past
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    attended, (k, v) = layer.self_attend(X, causal)  # a decoder's first step: one projection, and the cache
    torch.testing.assert_close(attended, full)
    for got, want in zip((k, v), layer.project_kv(X, X)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="queries must have embed_dim = 8 features, got 3"):
        layer.self_attend(X[..., :3])


def test_project_kv_and_attend_twins_agree_and_check_their_shapes():
    torch.manual_seed(2)
    s = scratch.MultiHeadAttention(8, 4).double()
    nn.init.normal_(s.in_proj_bias)
    f = fast.MultiHeadAttention(8, 4).double()
    f.load_state_dict(s.state_dict())
    queries, keys = torch.randn(2, 3, 8, dtype=F64), torch.randn(2, 6, 8, dtype=F64)
    values = torch.randn(2, 6, 8, dtype=F64)
    for kv in ((keys, keys), (keys, values)):  # one fused projection when keys is values, two otherwise
        for a, b in zip(s.project_kv(*kv), f.project_kv(*kv)):
            torch.testing.assert_close(a, b)
    vl = torch.tensor([2, 6])
    torch.testing.assert_close(s.attend(queries, *s.project_kv(keys, keys), vl),
                               f.attend(queries, *f.project_kv(keys, keys), vl))
    torch.testing.assert_close(s.attend(queries, *s.project_kv(keys, keys), vl), s(queries, keys, keys, vl))
    for twin in (s, f):
        k, v = twin.project_kv(keys, keys)
        with pytest.raises(ValueError, match=r"projected keys and values \(B, H, K, Dh\) = \(2, 4, K, 2\), got shapes "
                                             r"\(2, 3, 8\), \(2, 4, 6, 2\) and \(2, 4, 5, 2\)"):
            twin.attend(queries, k, v[:, :, :5])
        with pytest.raises(ValueError, match="keys and values must have embed_dim = 8 features, got 8 and 4"):
            twin.project_kv(keys, keys[..., :4])
        with pytest.raises(ValueError, match="queries must have embed_dim = 8 features, got 3"):
            twin.attend(queries[..., :3], k, v)


def test_token_packing_keeps_the_real_positions_in_order_and_pads_with_zeros():
    valid_lens = torch.tensor([3, 0, 5, 1])
    packing = scratch.TokenPacking(valid_lens, 5)
    X = torch.arange(4 * 5 * 2, dtype=F64).reshape(4, 5, 2)
    packed = packing.pack(X)  # by hand: sequence by sequence, the first valid_lens[b] steps
    torch.testing.assert_close(packed, torch.cat([X[b, :n] for b, n in enumerate(valid_lens.tolist())]))
    padded = packing.pad(packed)
    real = torch.arange(5)[None] < valid_lens[:, None]
    torch.testing.assert_close(padded[real], X[real])
    assert not padded[~real].any()
    torch.testing.assert_close(packing.pad(packing.pack(torch.ones(4, 5))), real.float())  # no trailing axis too
    Y = torch.randn(9, 2, dtype=F64, requires_grad=True)  # gradients flow through pad and pack
    assert torch.autograd.gradcheck(lambda y: packing.pack(packing.pad(y) * 2), (Y,))
    with pytest.raises(ValueError, match=r"valid lengths \(B,\) between 0 and 5, got \[3, 6\]"):
        scratch.TokenPacking(torch.tensor([3, 6]), 5)
    with pytest.raises(ValueError, match=r"pack takes a \(4, 5, ...\) tensor, got \(4, 6, 2\)"):
        packing.pack(torch.zeros(4, 6, 2))
    with pytest.raises(ValueError, match=r"pad takes the 9 real positions \(n, ...\), got \(8, 2\)"):
        packing.pad(torch.zeros(8, 2))


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_packed_self_attention_equals_padded_attention_at_the_real_positions(twin):
    torch.manual_seed(4)
    layer = twin.MultiHeadAttention(8, 2).double()
    nn.init.normal_(layer.in_proj_bias)
    valid_lens = torch.tensor([4, 1, 6])
    packing = twin.TokenPacking(valid_lens, 6)
    real = torch.arange(6)[None] < valid_lens[:, None]  # (B, T)
    X = torch.randn(3, 6, 8, dtype=F64)
    X_ref, X_packed = X.clone().requires_grad_(), packing.pack(X).requires_grad_()
    ref = layer(X_ref, X_ref, X_ref, valid_lens)[real]  # (n, E)
    ours = layer(X_packed, X_packed, X_packed, packing=packing)
    torch.testing.assert_close(ours, ref)
    grad = torch.randn_like(ref)
    params = list(layer.parameters())
    ref_grads = torch.autograd.grad(ref, [X_ref, *params], grad)
    our_grads = torch.autograd.grad(ours, [X_packed, *params], grad)
    torch.testing.assert_close(our_grads[0], ref_grads[0][real])
    for a, b in zip(our_grads[1:], ref_grads[1:]):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"with packing, attention is self-attention of packed tokens X \(n, E\)"):
        layer(X_packed, X_packed.clone(), X_packed, packing=packing)


def test_every_attention_parameter_gets_a_gradient():
    queries, keys, values = qkv(dtype=torch.float32)
    for twin in TWINS:
        for layer, inputs in ((twin.AdditiveAttention(4, 4, 5, 0.0), (queries, keys, values)),
                              (twin.MultiHeadAttention(4, 2), (queries, keys, torch.randn(2, 5, 4)))):
            layer(*inputs, torch.tensor([2, 5])).square().sum().backward()
            for name, p in layer.named_parameters():
                assert p.grad is not None and torch.count_nonzero(p.grad) > 0, (twin.__name__, name)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_bad_shapes_raise_one_line_value_errors(twin):
    queries, keys, values = qkv(dtype=torch.float32)
    cases = [
        (lambda: twin.masked_softmax(torch.randn(2, 3, 4), torch.tensor([1, 2, 3])),
         r"valid_lens must have shape \(B,\) = \(2,\) or \(B, Q\) = \(2, 3\), got \(3,\)"),
        (lambda: twin.masked_softmax(torch.randn(2, 3, 4), torch.ones(2, 4)),
         r"valid_lens must have shape .* got \(2, 4\)"),
        (lambda: twin.masked_softmax(torch.randn(3, 4), None),
         r"masked_softmax takes scores \(B, Q, K\), got shape \(3, 4\)"),
        (lambda: twin.MultiHeadAttention(10, 3), "embed_dim 10 must be divisible by num_heads 3"),
        (lambda: twin.MultiHeadAttention(8, 2)(queries, keys, keys),
         "queries, keys and values must have embed_dim = 8 features, got 4, 4 and 4"),
        (lambda: twin.DotProductAttention(0.0)(queries, keys[:, :4], values), r"attention takes queries \(B, Q, \.\)"),
        (lambda: twin.DotProductAttention(0.0)(queries, keys[..., :3], values),
         "queries and keys of one size D, got 4 and 3"),
        (lambda: twin.DotProductAttention(0.0)(queries, keys, values, torch.tensor([1])),
         r"valid_lens must have shape \(B,\) = \(2,\) or \(B, Q\) = \(2, 3\), got \(1,\)"),
        (lambda: twin.PositionalEncoding(4, 0.0, max_len=5)(torch.zeros(1, 6, 4)),
         r"T <= max_len = 5, got shape \(1, 6, 4\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- positional encoding

def test_sinusoid_table_values_by_hand():
    P = scratch.sinusoid_table(10, 8, dtype=F64)  # d = 8: frequencies 1, 1/10, 1/100, 1/1000
    assert P.shape == (10, 8) and P.dtype == F64
    torch.testing.assert_close(P[0], torch.tensor([0.0, 1.0] * 4, dtype=F64))
    by_hand = {(1, 0): math.sin(1), (1, 1): math.cos(1), (1, 2): math.sin(0.1), (2, 3): math.cos(0.2),
               (3, 4): math.sin(0.03), (5, 7): math.cos(0.005), (9, 6): math.sin(0.009)}
    for (i, j), value in by_hand.items():
        assert P[i, j].item() == pytest.approx(value, abs=1e-15), (i, j)
    odd = scratch.sinusoid_table(4, 5)
    assert odd.shape == (4, 5) and odd.dtype == torch.get_default_dtype()
    i = torch.arange(4, dtype=F64)
    for j in range(3):  # an odd d keeps the last sine column, without its cosine
        torch.testing.assert_close(odd[:, 2 * j], torch.sin(i / 10000 ** (2 * j / 5)).float())
        if 2 * j + 1 < 5:
            torch.testing.assert_close(odd[:, 2 * j + 1], torch.cos(i / 10000 ** (2 * j / 5)).float())
    assert fast.sinusoid_table is scratch.sinusoid_table


def rotation(delta, num_hiddens):
    """The block-diagonal map of D2L §10.6.3.2: each (sin, cos) pair turned by delta * w_j."""
    w = 10000.0 ** (-torch.arange(0, num_hiddens, 2, dtype=F64) / num_hiddens)
    blocks = [torch.tensor([[math.cos(delta * wj), math.sin(delta * wj)],
                            [-math.sin(delta * wj), math.cos(delta * wj)]], dtype=F64) for wj in w.tolist()]
    return torch.block_diag(*blocks)


def test_position_i_plus_delta_is_a_fixed_rotation_of_position_i():
    P = scratch.sinusoid_table(200, 16, dtype=F64)
    for delta in (1, 5, 37):
        M = rotation(delta, 16)
        torch.testing.assert_close(M @ M.T, torch.eye(16, dtype=F64))  # a rotation: lengths are kept
        for i in (0, 3, 50, 120):
            torch.testing.assert_close(P[i + delta], M @ P[i], atol=1e-12, rtol=0)
        # the same M for every i at once, and M depends on delta only: M(a) M(b) = M(a + b)
        torch.testing.assert_close(P[delta:], P[:-delta] @ M.T, atol=1e-12, rtol=0)
        torch.testing.assert_close(rotation(delta, 16) @ rotation(3, 16), rotation(delta + 3, 16))


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_positional_encoding_adds_the_table_and_keeps_it_out_of_the_state_dict(twin):
    layer = twin.PositionalEncoding(6, dropout=0.5, max_len=20).eval()
    assert "P" not in layer.state_dict() and dict(layer.named_buffers())["P"].shape == (1, 20, 6)
    X = torch.randn(2, 7, 6)
    torch.testing.assert_close(layer(X), X + scratch.sinusoid_table(7, 6))
    layer.to(F64)
    assert layer.P.dtype == F64  # a buffer moves with .to()
    assert layer(X.double()).dtype == F64
    assert layer.float()(X.bfloat16()).dtype == torch.bfloat16
    layer.train()
    assert not torch.equal(layer(X), X + scratch.sinusoid_table(7, 6))
    other = (fast if twin is scratch else scratch).PositionalEncoding(6, 0.5, max_len=20).eval()
    other.load_state_dict(layer.state_dict())
    torch.testing.assert_close(other(X), layer.eval()(X))


@pytest.mark.parametrize("twin", TWINS, ids=TWIN_IDS)
def test_positional_encoding_at_an_offset_continues_the_sequence(twin):
    """A decoder fed one token at a time adds position t to its t-th token, as in training."""
    layer = twin.PositionalEncoding(6, dropout=0.0, max_len=20)
    X = torch.randn(2, 7, 6)
    whole = layer(X)
    torch.testing.assert_close(torch.cat([layer(X[:, t:t + 1], offset=t) for t in range(7)], dim=1), whole)
    torch.testing.assert_close(layer(X[:, 3:], offset=3), whole[:, 3:])
    with pytest.raises(ValueError, match=r"offset \+ T <= max_len = 20, got shape \(2, 7, 6\) at offset 14"):
        layer(X, offset=14)


# ----------------------------------------------------------------------------- heatmaps

def test_show_heatmaps_draws_one_image_per_map_and_one_shared_colour_bar():
    import io

    from matplotlib.figure import Figure

    from divekit.viz.attention import show_heatmaps

    layer = fast.MultiHeadAttention(8, 4)
    layer.record_weights = True
    X = torch.randn(2, 5, 8)
    layer(X, X, X, torch.tensor([5, 3]))
    fig = show_heatmaps(layer.attention_weights, "keys", "queries", titles=[f"head {h}" for h in range(4)])
    assert isinstance(fig, Figure)
    maps, colour_bars = fig.axes[:8], fig.axes[8:]
    assert len(maps) == 8 and len(colour_bars) == 1  # (batch 2) x (heads 4) heatmaps + the colour bar
    assert all(len(ax.images) == 1 for ax in maps)
    assert {ax.images[0].get_clim() for ax in maps} == {(0.0, layer.attention_weights.max().item())}  # one scale
    assert [ax.get_title() for ax in maps] == [f"head {h}" for h in range(4)] * 2
    assert [ax.get_xlabel() for ax in maps] == [""] * 4 + ["keys"] * 4
    assert [ax.get_ylabel() for ax in maps] == ["queries", "", "", ""] * 2
    torch.testing.assert_close(torch.as_tensor(maps[5].images[0].get_array().data), layer.attention_weights[1, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # renders headless
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_show_heatmaps_takes_the_books_single_map_and_rejects_bad_input():
    from divekit.viz.attention import show_heatmaps

    fig = show_heatmaps(torch.eye(10).reshape(1, 1, 10, 10), xlabel="Keys", ylabel="Queries")  # D2L §10.1
    assert len(fig.axes) == 2 and len(fig.axes[0].images) == 1
    with pytest.raises(ValueError, match=r"\(rows, cols, Q, K\), got shape \(10, 10\)"):
        show_heatmaps(torch.eye(10), "Keys", "Queries")
    with pytest.raises(ValueError, match=r"one entry per column \(1\), got 2"):
        show_heatmaps(torch.eye(3)[None, None], "Keys", "Queries", titles=["a", "b"])

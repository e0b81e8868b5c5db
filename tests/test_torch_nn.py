"""regtune.torch.nn: dropout modules whose backward regenerates the mask (torch optional)."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("regtune.torch")

from regtune import dropout as rd  # noqa: E402


def _saved_bytes(fn):
    """Bytes of the tensors autograd saves for the backward while fn() runs."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(saved), out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_forward_and_regenerated_backward_match_the_mask(dtype):
    torch.manual_seed(3)
    x = (torch.rand(37, 53, dtype=dtype) + 0.5).requires_grad_()  # no zeros: y == 0 marks a drop
    y = rt.nn.dropout(x, 0.3)
    keep = y.detach() != 0
    scale = torch.tensor(1 / (1 - 0.3), dtype=dtype)
    assert torch.equal(y.detach(), torch.where(keep, x.detach() * scale, torch.zeros((), dtype=dtype)))
    assert 0.6 < keep.double().mean().item() < 0.8
    dy = torch.randn_like(x)
    y.backward(dy)
    assert torch.equal(x.grad, torch.where(keep, dy * scale, torch.zeros((), dtype=dtype)))


def test_the_mask_is_regtunes_stream_for_the_key_drawn_from_torch():
    torch.manual_seed(11)
    key = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)) & (2**64 - 1)
    torch.manual_seed(11)
    x = torch.ones(1000)
    y = rt.nn.dropout(x, 0.5)
    want = rd.dropout(np.ones(1000, np.float32), 0.5, seed=key, return_mask=False)
    assert np.array_equal(y.numpy(), want)


def test_no_mask_is_saved_where_torch_saves_one():
    x = torch.randn(256, 256, requires_grad=True)
    ours, y = _saved_bytes(lambda: rt.nn.Dropout(0.5)(x))
    theirs, _ = _saved_bytes(lambda: torch.nn.Dropout(0.5)(x))
    assert ours == 8 and theirs >= x.numel()  # ours: the 64-bit key; torch: at least a byte per element
    y.sum().backward()
    assert x.grad is not None


def test_manual_seed_reproduces_and_checkpoint_recomputes_the_same_mask():
    lin = torch.nn.Linear(32, 32)
    drop = rt.nn.Dropout(0.4)
    x = torch.randn(16, 32, requires_grad=True)

    def block(inp):
        return drop(lin(inp)).relu()

    torch.manual_seed(5)
    block(x).sum().backward()
    g_plain = x.grad.clone()
    x.grad = None
    torch.manual_seed(5)
    torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False).sum().backward()
    assert torch.equal(x.grad, g_plain)
    torch.manual_seed(5)
    a = drop(x)
    b = drop(x)  # a fresh mask per forward
    torch.manual_seed(5)
    assert torch.equal(drop(x), a) and not torch.equal(a, b)


def test_eval_p0_p1_and_inplace():
    x = torch.randn(10, 10)
    m = rt.nn.Dropout(0.5).eval()
    assert m(x) is x
    assert rt.nn.dropout(x, 0.0) is x
    assert torch.equal(rt.nn.dropout(x, 1.0), torch.zeros_like(x))
    torch.manual_seed(1)
    want = rt.nn.dropout(x, 0.5)
    torch.manual_seed(1)
    y = x.clone()
    out = rt.nn.Dropout(0.5, inplace=True)(y)
    assert out is y and torch.equal(y, want)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_channel_dropout_keeps_or_drops_whole_channels(dims):
    shape = (4, 6) + (5,) * dims
    x = torch.rand(shape) + 0.5
    cls = getattr(rt.nn, f"Dropout{dims}d")
    torch.manual_seed(2)
    y = cls(0.5)(x)
    chans = y.reshape(24, -1)
    assert all(bool((c == 0).all() or (c != 0).all()) for c in chans)
    torch.manual_seed(2)
    y1 = cls(0.5)(x[0])  # unbatched (C, ...): the first sample's channels
    assert torch.equal(y1, y[0])


def test_alpha_dropout_keeps_mean_and_variance_and_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(200_000, requires_grad=True)
    y = rt.nn.AlphaDropout(0.2)(x)
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1) < 0.02
    y.sum().backward()
    a = 1 / np.sqrt((1.7580993408473766**2 * 0.2 + 1) * 0.8)
    vals = np.unique(x.grad.numpy()).tolist()
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(a, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feature_alpha_dropout_keeps_channels_mean_and_variance(dtype):
    torch.manual_seed(0)
    x = torch.randn(400, 50, 3, dtype=dtype, requires_grad=True)
    y = rt.nn.FeatureAlphaDropout(0.2).train()(x)
    alpha, p = 1.7580993408473766, 0.2
    a = 1 / np.sqrt((alpha**2 * p + 1) * (1 - p))
    y.backward(torch.ones_like(y))
    keep = x.grad[:, :, 0] != 0  # dx = dy * a on kept channels, 0 on dropped ones
    assert torch.equal(x.grad, keep[:, :, None].to(dtype).expand_as(x) * x.grad[:, :, :1])
    assert abs(keep.double().mean().item() - 0.8) < 0.01
    dropped = y.detach()[~keep]
    assert torch.allclose(dropped, torch.full_like(dropped, -alpha * a * (1 - p)), rtol=1e-6)
    kept = y.detach()[keep]
    assert torch.allclose(kept, x.detach()[keep] * a + alpha * a * p, rtol=1e-5, atol=1e-6)
    assert abs(y.mean().item()) < 0.02 and abs(y.var().item() - 1) < 0.03
    assert rt.nn.FeatureAlphaDropout(0.2).eval()(x) is x
    torch.manual_seed(1)
    want = rt.nn.feature_alpha_dropout(x.detach(), 0.2, training=True)
    torch.manual_seed(1)
    z = x.detach().clone()
    rt.nn.feature_alpha_dropout(z, 0.2, training=True, inplace=True)
    assert torch.equal(z, want)


def test_gradcheck_in_float64():
    x = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)

    def f(inp):
        torch.manual_seed(4)
        return rt.nn.dropout(inp, 0.3)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))  # the backward is linear in dy: its own derivative


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rt.nn.dropout(torch.ones(3, dtype=torch.int32), 0.5), TypeError, r"input must have dtype torch.float32"),
        (lambda: rt.nn.dropout(torch.ones(3, dtype=torch.float8_e4m3fn), 0.5), TypeError, r"input must have dtype"),
        (lambda: rt.nn.dropout(np.ones(3), 0.5), TypeError, r"input must be a torch.Tensor"),
        (lambda: rt.nn.dropout(torch.ones(3), 1.5), ValueError, r"p must be in \[0, 1\]"),
        (lambda: rt.nn.dropout(torch.ones(3), float("nan")), ValueError, r"p must be finite"),
        (lambda: rt.nn.dropout(torch.ones(3), 0.5, training=1), TypeError, r"training must be a bool"),
        (lambda: rt.nn.Dropout(-0.1), ValueError, r"p must be in"),
        (lambda: rt.nn.Dropout(0.5, inplace="yes"), TypeError, r"inplace must be a bool"),
        (lambda: rt.nn.dropout2d(torch.ones(3, 4), 0.5), ValueError, r"input must have 3 \(unbatched\) or 4"),
        (lambda: rt.nn.dropout(torch.ones(4, 4).t(), 0.5, inplace=True), ValueError, r"contiguous for inplace"),
        (lambda: rt.nn.feature_alpha_dropout(torch.ones(4, 4).t(), 0.5, True, inplace=True), ValueError, r"input must be contiguous for inplace"),
        (lambda: rt.nn.dropout(torch.ones(4, 4).to_sparse(), 0.5), TypeError, r"input must be a dense \(strided\) tensor, got layout torch.sparse_coo"),
        (lambda: rt.nn.Dropout2d(0.5)(torch.ones(2, 3, 4).to_sparse()), TypeError, r"input must be a dense"),
    ],
)  # fmt: skip
def test_bad_inputs_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_a_non_contiguous_input_is_read_once_and_gives_a_contiguous_output():
    x = torch.rand(8, 6).t() + 0.5
    torch.manual_seed(9)
    y = rt.nn.dropout(x, 0.5)
    torch.manual_seed(9)
    want = rt.nn.dropout(x.contiguous(), 0.5)
    assert torch.equal(y, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("module", [rt.nn.Dropout(0.3), rt.nn.AlphaDropout(0.3), rt.nn.Dropout2d(0.3)],
                         ids=["dropout", "alpha", "dropout2d"])
def test_16bit_tensors_give_the_float32_result_rounded(module, dtype):
    # bf16 tensors reach the kernels through an int16 view (DLPack has no bfloat16 for NumPy)
    x = torch.randn(4, 6, 5, 7).to(dtype).requires_grad_()
    x32 = x.detach().float().requires_grad_()
    torch.manual_seed(3)
    y = module(x)
    torch.manual_seed(3)
    y32 = module(x32)
    assert y.dtype == dtype and torch.equal(y, y32.to(dtype))
    g = torch.randn(y.shape).to(dtype)
    y.backward(g)
    y32.backward(g.float())
    assert torch.equal(x.grad, x32.grad.to(dtype))


# ---------------------------------------------------------------- torch.compile
def _cxx_compiler() -> bool:
    """inductor's CPU code needs a C++ compiler (the wheel test venv has none on PATH)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:
        return False
    return True


class _Net(torch.nn.Module):
    """Tiny, and exact under inductor outside the dropouts: no bias (inductor may sum a bias
    gradient in another order than eager), relu and reshapes only between the matrix products."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 12, bias=False)
        self.drop = rt.nn.Dropout(0.3, inplace=inplace)
        self.b = torch.nn.Linear(12, 6, bias=False)
        self.alpha = rt.nn.AlphaDropout(0.2)
        self.chan = rt.nn.Dropout1d(0.5)
        self.feature_alpha = rt.nn.FeatureAlphaDropout(0.3)

    def forward(self, x):
        h = self.alpha(self.b(self.drop(self.a(x)).relu()))
        return self.feature_alpha(self.chan(h.reshape(-1, 2, 3)))


def test_torch_compile_traces_the_dropouts_with_no_graph_break():
    torch._dynamo.reset()
    ex = torch._dynamo.explain(_Net(inplace=False))(torch.randn(5, 8, requires_grad=True))
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    assert ex.graphs[0].code.count("torch.ops.regtune.dropout") == 4  # the four modules, as custom ops


# torch 2.13's own deprecations, raised inside dynamo (any autograd.Function) and inductor
_TORCH_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.* is deprecated:DeprecationWarning"),
]


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize(
    "backend",
    ["aot_eager",
     pytest.param("inductor", marks=[
         pytest.mark.skipif(not _cxx_compiler(), reason="no C++ compiler for inductor"),
         # CI's sanitizer stage preloads ASan into every subprocess, the compiler inductor runs
         # included; the native stage runs these tests.
         pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="inductor's compiler under ASan"),
     ])],
)  # fmt: skip
@_TORCH_DEPRECATIONS[0]
@_TORCH_DEPRECATIONS[1]
def test_torch_compile_gives_eagers_bits_forward_and_backward(backend, inplace):
    torch.manual_seed(0)
    net = _Net(inplace)
    x = torch.randn(5, 8, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(net, backend=backend, fullgraph=True)  # fullgraph: a graph break raises

    def run(model, seed):
        torch.manual_seed(seed)
        y = model(x)
        y.backward(torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape) / 7)
        grads = [t.grad.clone() for t in (x, *net.parameters())]
        x.grad = None
        net.zero_grad()
        return y.detach(), grads, torch.get_rng_state()  # the generator advanced as far as eager's

    outs = []
    for seed in (7, 8):
        want, got = run(net, seed), run(compiled, seed)
        assert torch.equal(got[0], want[0])
        assert all(torch.equal(g, w) for g, w in zip(got[1], want[1]))
        assert torch.equal(got[2], want[2])
        outs.append(got[0])
    assert not torch.equal(outs[0], outs[1])  # a fresh mask per call, not one baked into the graph
    net.eval()
    assert torch.equal(compiled(x), net(x))  # eval: identity (a recompile, same values)


@pytest.mark.parametrize("kind", ["dropout", "alpha", "feature", "feature_alpha"])
def test_the_custom_ops_pass_torchs_opcheck_and_match_the_eager_functions(kind):
    # schema, fake implementations, autograd registration, AOT dispatch: torch's own checks
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, requires_grad=True)
    key = torch.tensor(-123456789, dtype=torch.int64)  # a key given: the op is deterministic
    ops = torch.ops.regtune
    torch.library.opcheck(ops.dropout.default, (x, key, 0.3, kind))
    torch.library.opcheck(ops.dropout_backward.default, (torch.randn(4, 6, 5, requires_grad=True), key, 0.3, kind))
    torch.library.opcheck(ops.dropout_.default, (x.detach().clone(), key, 0.3, kind))
    functional = {"dropout": rt.nn.dropout, "alpha": rt.nn.alpha_dropout, "feature": rt.nn.dropout1d,
                  "feature_alpha": rt.nn.feature_alpha_dropout}[kind]  # fmt: skip
    want = functional(x, 0.3, training=True, generator=torch.Generator().manual_seed(5))
    key = torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=torch.Generator().manual_seed(5))
    y, k = ops.dropout(x, key, 0.3, kind)  # the op, eager, with the key the functional form drew
    assert torch.equal(y, want) and torch.equal(k, key)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: torch.ops.regtune.dropout(torch.ones(3), None, 0.5, "gaussian"), ValueError, r"kind must be one of"),
        (lambda: torch.ops.regtune.dropout(torch.ones(3), torch.ones(2), 0.5, "dropout"), TypeError, r"key must be a 0-d"),
        (lambda: torch.ops.regtune.dropout(torch.ones(3), None, 1.5, "dropout"), ValueError, r"p must be in \[0, 1\]"),
        (lambda: torch.ops.regtune.dropout(torch.ones(3, dtype=torch.int8), None, 0.5, "dropout"), TypeError, r"x must have dtype"),
        (lambda: torch.ops.regtune.dropout_(torch.ones(4, 4).t(), None, 0.5, "dropout"), ValueError, r"x must be contiguous"),
        (lambda: torch.ops.regtune.dropout_backward(torch.ones(3), torch.tensor(1.0), 0.5, "alpha"), TypeError, r"key must be"),
    ],
)  # fmt: skip
def test_direct_op_calls_check_their_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()

"""regtune.torch.optim: regtune's optimizers as torch.optim.Optimizer subclasses, and torch
tensors taken zero-copy by every regtune function (torch optional)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("regtune.torch")

import regtune  # noqa: E402
from regtune import optim as ro  # noqa: E402

F = torch.nn.functional


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), rt.nn.Dropout2d(0.1), torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 32), torch.nn.ReLU(), rt.nn.Dropout(0.2), torch.nn.Linear(32, 10),
    )  # fmt: skip


class _Transformer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.drop = rt.nn.Dropout(0.1)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.drop(self.enc(x)).mean(dim=1))


def _train(make, opt_fn, x, y, steps, sched=None):
    model = make()
    opt = opt_fn(model.parameters())
    s = sched(opt) if sched else None
    torch.manual_seed(123)  # the same dropout masks for both runs
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if s:
            s.step()
    return model


@pytest.mark.parametrize("make, shape, classes", [(_cnn, (32, 3, 8, 8), 10), (_Transformer, (16, 8, 16), 4)],
                         ids=["cnn", "transformer"])  # fmt: skip
@pytest.mark.parametrize("name, kw", [("AdamW", dict(lr=1e-3)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                      ("Adagrad", dict(lr=1e-2))])  # fmt: skip
def test_200_steps_track_torch_fused(make, shape, classes, name, kw):
    """Within float32 tolerance of torch's fused step, or of the spread between torch's own fused
    and foreach steps where that is wider: the attention's key bias has a zero true gradient, so
    Adam turns its rounding noise into full steps, in torch's two implementations alike."""
    torch.manual_seed(7)
    x, y = torch.randn(shape), torch.randint(0, classes, (shape[0],))
    ours = _train(make, lambda p: getattr(rt.optim, name)(p, **kw), x, y, 200)
    theirs = _train(make, lambda p: getattr(torch.optim, name)(p, **kw, fused=True), x, y, 200)
    control = _train(make, lambda p: getattr(torch.optim, name)(p, **kw, foreach=True), x, y, 200)
    for a, b, c in zip(ours.parameters(), theirs.parameters(), control.parameters()):
        spread = (c - b).abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 + 2 * spread)


def test_a_torch_lr_scheduler_drives_it_exactly_as_torch():
    torch.manual_seed(7)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    sched = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=30)  # noqa: E731
    ours = _train(_cnn, lambda p: rt.optim.Adam(p, lr=1e-3), x, y, 30, sched)
    theirs = _train(_cnn, lambda p: torch.optim.Adam(p, lr=1e-3, fused=True), x, y, 30, sched)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, kw", [("AdamW", dict(lr=1e-2)), ("SGD", dict(lr=0.1, momentum=0.9)),
                                      ("NAdam", dict(lr=1e-2)), ("Adafactor", dict(lr=1e-2)),
                                      ("RMSprop", dict(lr=1e-3, centered=True)), ("Adagrad", dict(lr=1e-2))])  # fmt: skip
def test_checkpoints_move_between_regtune_and_torch(name, kw):
    torch.manual_seed(7)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    a, b = _cnn(), _cnn()
    oa = getattr(rt.optim, name)(a.parameters(), **kw)
    ob = getattr(torch.optim, name)(b.parameters(), **kw)
    for _ in range(5):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            F.cross_entropy(m.eval()(x), y).backward()
            o.step()
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))  # each continues from the other's state
    oa.load_state_dict(copy.deepcopy(ob.state_dict()))
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_groups_none_grads_closure_and_add_param_group():
    w, b, frozen = (torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(torch.zeros(3)),
                    torch.nn.Parameter(torch.ones(2)))  # fmt: skip
    opt = rt.optim.SGD([{"params": [w], "lr": 0.1}, {"params": [b]}], lr=0.5)
    opt.add_param_group({"params": [frozen], "lr": 1.0})
    w.grad, b.grad = torch.ones(4, 3), torch.ones(3)  # frozen.grad stays None: skipped

    def closure():
        return torch.tensor(42.0)

    assert opt.step(closure).item() == 42.0
    assert torch.allclose(w, torch.full((4, 3), 0.9)) and torch.allclose(b, torch.full((3,), -0.5))
    assert torch.equal(frozen, torch.ones(2)) and frozen not in opt.state
    b.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_one_native_call_steps_every_group_and_a_failing_check_steps_none(monkeypatch):
    from regtune import _core

    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(5, 4)) for _ in range(4)]
    groups = [{"params": ps[:2], "lr": 0.1}, {"params": [ps[2]], "weight_decay": 0.5}, {"params": [ps[3]], "lr": 0.01}]
    opt = rt.optim.AdamW(groups, lr=0.05)
    twins = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    twin = {id(p): q for p, q in zip(ps, twins)}
    ref = torch.optim.AdamW([{**g, "params": [twin[id(p)] for p in g["params"]]} for g in groups], lr=0.05,
                            foreach=False)  # fmt: skip
    calls = []
    real = _core.optim_steps
    monkeypatch.setattr(_core, "optim_steps", lambda c: calls.append(len(c)) or real(c))
    for t in range(3):
        for p, q in zip(ps, twins):
            p.grad = torch.randn(5, 4) if not (t == 0 and p is ps[1]) else None  # ps[1] starts a step late
            q.grad = None if p.grad is None else p.grad.clone()
        opt.step()
        ref.step()
    # step 1 has 3 groups; steps 2 and 3 also split group 0 by step count (ps[1] one behind)
    assert calls == [3, 4, 4]
    for p, q in zip(ps, twins):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    before = [p.detach().clone() for p in ps]
    ps[3].grad = torch.ones(5, 4).to_sparse()  # the last group's check fails: no group steps
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(ps, before)) and calls == [3, 4, 4]
    fresh = torch.nn.Parameter(torch.ones(3))
    opt.add_param_group({"params": [fresh]})
    fresh.grad = fresh.detach()  # refused by step_all's checks, after the state was bound
    ps[3].grad = None
    with pytest.raises(ValueError, match="overlaps"):
        opt.step()
    assert fresh not in opt.state or not opt.state[fresh]  # no half-made first step
    assert all(torch.equal(p, b) for p, b in zip(ps, before))


def test_parameters_that_skip_steps_keep_their_own_bias_correction():
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = rt.optim.Adam([p, q], lr=0.1)
    ref = ro.Adam([np.zeros(3, np.float32)], lr=0.1)
    for t in range(3):
        p.grad = torch.full((3,), 1.0 + t)
        q.grad = torch.full((3,), 1.0 + t) if t == 2 else None  # q steps once, at t = 2
        opt.step()
        ref.step([np.full(3, 1.0 + t, np.float32)])
    assert np.array_equal(p.detach().numpy(), ref.params[0])
    assert int(opt.state[p]["step"]) == 3 and int(opt.state[q]["step"]) == 1
    once = ro.Adam([np.zeros(3, np.float32)], lr=0.1)
    once.step([np.full(3, 3.0, np.float32)])
    assert np.array_equal(q.detach().numpy(), once.params[0])


@pytest.mark.parametrize("name", rt.optim.__all__)
def test_every_optimizer_steps_as_regtune_optim_does(name, monkeypatch):
    if name == "NAdam":  # torch's mu_product is in torch's default dtype; regtune.optim's in double
        monkeypatch.setattr(torch, "get_default_dtype", lambda: torch.float64)
    torch.manual_seed(1)
    shapes = [(5, 7), (7,)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    arrays = [p.detach().numpy().copy() for p in params]
    opt = getattr(rt.optim, name)(params, lr=1e-2)
    ref = getattr(ro, name)(arrays, lr=1e-2)
    for t in range(4):
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        ref.step([g.numpy() for g in grads])
    for p, a in zip(params, arrays):
        assert np.array_equal(p.detach().numpy(), a)
    assert params[0]._version > 0  # autograd sees the in-place update


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda p: rt.optim.AdamW(p, lr=-1.0), ValueError, r"lr must be in \[0, inf\)"),
        (lambda p: rt.optim.AdamW(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (lambda p: rt.optim.AdamW(p, momentum=0.9), TypeError, r"unexpected hyperparameters \['momentum'\]"),
        (lambda p: rt.optim.SGD([torch.zeros(3, dtype=torch.int32)]), TypeError,
         r"params\[0\] must have dtype torch.float32, float64, bfloat16 or float16"),
        (lambda p: rt.optim.SGD([torch.zeros(4, 3).t().requires_grad_()]), ValueError, r"params\[0\] must be contiguous"),
        (lambda p: rt.optim.SGD([{"params": p, "lr": float("nan")}]), ValueError, r"lr must be finite"),
    ],
)  # fmt: skip
def test_bad_optimizer_arguments_are_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make([torch.nn.Parameter(torch.zeros(3))])


# ---------------------------------------------------------------- zero-copy tensors everywhere
def test_regtune_functions_take_cpu_tensors_in_place():
    t = torch.empty(64, 32)
    regtune.random.normal(out=t, seed=1)
    assert np.array_equal(t.numpy(), regtune.random.normal((64, 32), seed=1))
    w = torch.empty(16, 8)
    regtune.init.kaiming_uniform(out=w, seed=2)
    assert np.array_equal(w.numpy(), regtune.init.kaiming_uniform((16, 8), seed=2))
    x = torch.rand(10, 10)
    y, mask = regtune.dropout(x, 0.5, seed=3)
    assert np.array_equal(y, regtune.dropout(x.numpy(), 0.5, seed=3)[0])
    regtune.dropout(x, 0.5, seed=3, out=x)  # in place in the tensor's memory
    assert np.array_equal(x.numpy(), y)
    g = torch.ones(5)
    assert regtune.optim.clip_grad_norm([g], 1.0) == pytest.approx(5**0.5) and g[0].item() == pytest.approx(5**-0.5)
    assert regtune.penalties.penalty_value(torch.ones(4), l1=1.0) == 4.0


def test_a_parameter_is_updated_in_place_through_regtune_optim():
    p = torch.nn.Parameter(torch.ones(3))
    ema = regtune.optim.EMA([p], decay=0.5)  # views of the same tensor: the same params
    opt = regtune.optim.SGD([p], lr=0.5, ema=ema)  # a Parameter: viewed through .detach()
    opt.step([torch.ones(3)])
    assert torch.equal(p.detach(), torch.full((3,), 0.5))
    assert np.array_equal(ema.averages[0], np.full(3, 0.5, np.float32))  # the first update copies


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: regtune.random.normal(out=torch.empty(3, dtype=torch.float8_e4m3fn), seed=0), TypeError,
         r"out must be a CPU array of float32 or float64 .* dtype torch.float8_e4m3fn"),
        (lambda: regtune.random.normal(out=torch.empty(4, 3).t(), seed=0), ValueError, r"out must be C-contiguous"),
        (lambda: regtune.random.normal(out=torch.empty(3, dtype=torch.int32), seed=0), TypeError,
         r"out must have dtype float32, float64, bfloat16 or float16, got int32"),
        (lambda: regtune.optim.SGD([torch.ones(3).expand(2, 3)]), ValueError, r"params\[0\] must be"),
        (lambda: regtune.dropout(torch.ones(3, dtype=torch.int16), 0.5, seed=0), TypeError,
         r"x must have dtype float32, float64, bfloat16 or float16, got int16"),
    ],
)  # fmt: skip
def test_tensors_regtune_cannot_use_in_place_are_refused_by_name(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("tdt", ["bfloat16", "float16"])
@pytest.mark.parametrize("name, kw", [("AdamW", dict(lr=1e-2, weight_decay=0.1)), ("Adam", dict(lr=1e-2, amsgrad=True)),
                                      ("Adagrad", dict(lr=0.0625, eps=2**-20))])  # fmt: skip
def test_16_bit_parameters_with_16_bit_state_equal_torch_fused(name, kw, tdt):
    tdt = getattr(torch, tdt)
    gen = torch.Generator().manual_seed(0)
    w0 = [torch.randn(37, 53, generator=gen).to(tdt), torch.randn(67, generator=gen).to(tdt)]
    ours = [w.clone().requires_grad_() for w in w0]
    theirs = [w.clone().requires_grad_() for w in w0]
    oa = getattr(rt.optim, name)(ours, state_dtype=tdt, **kw)
    ob = getattr(torch.optim, name)(theirs, fused=True, **kw)
    for _ in range(20):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, generator=gen).to(tdt)
            b.grad = a.grad.clone()
        oa.step()
        ob.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a.detach().view(torch.int16), b.detach().view(torch.int16))
        assert all(t.dtype == tdt for k, t in oa.state[a].items() if k != "step")


@pytest.mark.parametrize("precision, kw", [("stochastic", {"seed": 3}), ("master", {})])
def test_16_bit_parameters_keep_float32_state_and_round_trip(precision, kw):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(40, 9, generator=gen).to(torch.bfloat16).requires_grad_()
    opt = rt.optim.AdamW([w], lr=1e-3, precision=precision, **kw)
    grads = [torch.randn(40, 9, generator=gen).to(torch.bfloat16) for _ in range(4)]
    for g in grads[:2]:
        w.grad = g
        opt.step()
    assert opt.state[w]["exp_avg"].dtype == torch.float32
    assert ("master" in opt.state[w]) == (precision == "master")
    saved, w_saved = copy.deepcopy(opt.state_dict()), w.detach().clone()
    for g in grads[2:]:
        w.grad = g
        opt.step()
    w2 = w_saved.clone().requires_grad_()
    opt2 = rt.optim.AdamW([w2], lr=1e-3, precision=precision, **kw)
    opt2.load_state_dict(saved)
    for g in grads[2:]:
        w2.grad = g
        opt2.step()
    assert torch.equal(w.detach().view(torch.int16), w2.detach().view(torch.int16))


def test_a_gradient_that_is_its_parameter_is_refused_by_name():
    # views of one tensor through different tensor objects (or DLPack exports) have different
    # NumPy bases: the overlap is found by address
    p = torch.nn.Parameter(torch.ones(3))
    opt = rt.optim.AdamW([p])
    p.grad = p.detach()
    with pytest.raises(ValueError, match=r"grads\[0\] overlaps params\[0\]; a gradient must not share memory"):
        opt.step()
    assert torch.equal(p, torch.ones(3)) and not opt.state[p]
    t = torch.ones(8)
    sgd = ro.SGD([t[:4].numpy()], lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\] overlaps params\[0\]"):
        sgd.step([t[2:6]])  # a DLPack view of the same storage, partly overlapping
    assert torch.equal(t, torch.ones(8))


def test_schedule_free_is_the_reference_with_train_eval_and_state_dicts_both_ways():
    # regtune.torch.optim.ScheduleFreeAdamW against the schedulefree package's
    # AdamWScheduleFree on one model: train()/eval() switches, then a state_dict of ours loaded
    # by the reference and one of the reference loaded by ours (the scalars live in the param
    # groups under the reference's keys). float32: within float32 rounding.
    sfree = pytest.importorskip("schedulefree")
    torch.manual_seed(0)
    model_a = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model_b = copy.deepcopy(model_a)
    kw = dict(lr=1e-2, warmup_steps=5, weight_decay=0.01, r=0.5)
    ours = rt.optim.ScheduleFreeAdamW(model_a.parameters(), **kw)
    ref = sfree.AdamWScheduleFree(model_b.parameters(), **kw)
    ours.train()
    ref.train()

    def close():
        for a, b in zip(model_a.parameters(), model_b.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)

    gen = torch.Generator().manual_seed(1)
    for t in range(40):
        x, y = torch.randn(4, 8, generator=gen), torch.randint(0, 3, (4,), generator=gen)
        for model, opt in ((model_a, ours), (model_b, ref)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        close()
        if t == 10:
            ours.eval()
            ref.eval()
            close()
            assert ours.param_groups[0]["train_mode"] is False
            ours.train()
            ref.train()
            close()
        if t == 20:  # ours -> the reference
            ref = sfree.AdamWScheduleFree(model_b.parameters(), **kw)
            ref.load_state_dict(copy.deepcopy(ours.state_dict()))  # (shares no tensor with ours)
            assert ref.param_groups[0]["k"] == 21 and ref.param_groups[0]["train_mode"] is True
        if t == 30:  # the reference -> ours
            ours = rt.optim.ScheduleFreeAdamW(model_a.parameters(), **kw)
            ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert ours.param_groups[0]["weight_sum"] == ref.param_groups[0]["weight_sum"]
    ours.eval()
    ref.eval()
    close()
    with pytest.raises(RuntimeError, match=r"train\(\)"):
        ours.step()


@pytest.mark.parametrize("name, key", [("AdamW", "exp_avg_sq"), ("Adafactor", "row_var"), ("SGD", "momentum_buffer")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loaded_state_is_refused(name, key, bad):
    """Issue 27: refuse non-finite state in every load_state_dict (this one is torch's layout)."""
    w = torch.nn.Parameter(torch.ones(4, 3))
    kw = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(rt.optim, name)([w], lr=1e-2, **kw)
    w.grad = torch.full((4, 3), 0.5)
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][0][key].view(-1)[-1] = bad
    before = {k: v.clone() for k, v in opt.state[w].items()}
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[0\]\['{key}'\] holds {bad}; .*finite"):
        opt.load_state_dict(saved)
    assert all(torch.equal(opt.state[w][k], v) for k, v in before.items())


def _twins(n=3):
    torch.manual_seed(5)
    ours = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(n)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    return ours, theirs


def _step_both(ours_opt, torch_opt, ours, theirs, steps=5):
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, generator=gen)
            a.grad, b.grad = g.clone(), g.clone()
        ours_opt.step()
        torch_opt.step()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_torch_code_runs_unchanged_flags_positional_lr_maximize_tensor_hyperparameters():
    ours, theirs = _twins()
    _step_both(rt.optim.SGD(ours, 0.1, 0.9, maximize=True, foreach=False),
               torch.optim.SGD(theirs, 0.1, 0.9, maximize=True, foreach=False), ours, theirs)
    ours, theirs = _twins()
    _step_both(rt.optim.AdamW(ours, lr=torch.tensor(1e-2), betas=(torch.tensor(0.9), torch.tensor(0.99)), fused=True),
               torch.optim.AdamW(theirs, lr=torch.tensor(1e-2), betas=(torch.tensor(0.9), torch.tensor(0.99))), ours, theirs)
    ours, theirs = _twins()
    _step_both(rt.optim.Adam(ours, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
               torch.optim.Adam(theirs, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True), ours, theirs)
    # maximize as a param-group key (and from a torch state_dict) is honoured, not ignored
    ours, theirs = _twins()
    o = rt.optim.SGD([{"params": ours[:2], "maximize": True}, {"params": ours[2:]}], lr=0.1)
    t = torch.optim.SGD([{"params": theirs[:2], "maximize": True}, {"params": theirs[2:]}], lr=0.1)
    _step_both(o, t, ours, theirs)
    ours, theirs = _twins()
    t = torch.optim.SGD(theirs, lr=0.1, momentum=0.5, maximize=True)
    o = rt.optim.SGD(ours, lr=0.1, momentum=0.5)
    o.load_state_dict(t.state_dict())
    assert o.param_groups[0]["maximize"] is True
    _step_both(o, t, ours, theirs)


@pytest.mark.parametrize("make, exc, match", [
    (lambda p: rt.optim.AdamW(p, capturable=True), ValueError, r"capturable=True \(CUDA graphs\) cannot be honoured"),
    (lambda p: rt.optim.AdamW(p, differentiable=True), ValueError, r"differentiable=True .* cannot be honoured"),
    (lambda p: rt.optim.AdamW(p, fused="yes"), TypeError, r"fused must be a bool or None"),
    (lambda p: rt.optim.SGD(p, 0.1, 0.9, 0.0, 0.0, False, 3), TypeError, r"at most 5 positional hyperparameters"),
    (lambda p: rt.optim.SGD(p, 0.1, lr=0.2), TypeError, r"lr both by position and by name"),
    (lambda p: rt.optim.AdamW(p, lr=torch.ones(2)), ValueError, r"must hold one value"),
    (lambda p: rt.optim.SGD(p, maximize="yes"), TypeError, r"maximize must be a bool"),
])  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(make, exc, match):
    with pytest.raises(exc, match=match):
        make([torch.nn.Parameter(torch.zeros(3))])


# ------------------------------------------------ param-group keys, schedulers, references' state
def _run_twins(ours_opt, ref_opt, ours, theirs, steps, scheds=(), none=lambda s, i: False, seed=2):
    """Steps both on the same gradients (None where ``none(step, i)``); returns the largest
    parameter difference."""
    gen = torch.Generator().manual_seed(seed)
    for s in range(steps):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            g = torch.randn(a.shape, generator=gen)
            a.grad, b.grad = (None, None) if none(s, i) else (g.clone(), g.clone())
        ours_opt.step()
        ref_opt.step()
        for sc in scheds:
            sc.step()
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


def _group_options(name):
    """A bad value of each regtune option of ``name`` (what its keyword check refuses)."""
    bad = {"lr": -1.0, "betas": (0.9, 1.5), "eps": -1.0, "weight_decay": -1.0, "momentum": -1.0, "dampening": float("nan"),
           "nesterov": "yes", "amsgrad": 2, "alpha": -1.0, "centered": "no", "lr_decay": -1.0,
           "initial_accumulator_value": -1.0, "momentum_decay": -1.0, "decoupled_weight_decay": 1, "rho": 2.0,
           "grad_averaging": "x", "trust_clamp": 0.0, "trust_coefficient": -1.0, "warmup_steps": -1, "r": -1.0,
           "weight_lr_power": -1.0, "beta2_decay": 1.0, "d": -1.0, "l1": -1.0, "prox_l1": -1.0, "max_grad_norm": 0.0,
           "maximize": "yes", "precision": "exact", "state_dtype": "int4", "seed": 3, "min_8bit_size": -1}  # fmt: skip
    return getattr(rt.optim, name)([torch.zeros(1)])._keys, bad


@pytest.mark.parametrize("name", rt.optim.__all__)
def test_a_group_key_goes_through_the_keyword_checks(name):
    """Issue 26: every hyperparameter as a param-group key is checked as the keyword is, with
    the same exception and message (never accepted and then ignored)."""
    keys, bad = _group_options(name)
    cls = getattr(rt.optim, name)
    assert set(keys) <= set(bad), sorted(set(keys) - set(bad))  # a new option needs its bad value here
    for k in keys:
        p = torch.nn.Parameter(torch.zeros(3))
        with pytest.raises((TypeError, ValueError)) as by_keyword:
            cls([p], **{k: bad[k]})
        with pytest.raises(by_keyword.type) as by_group:
            cls([{"params": [p], k: bad[k]}])
        assert str(by_group.value) == str(by_keyword.value)
        opt = cls([p])  # a key set in an existing group: refused at the next step, nothing stepped
        opt.param_groups[0][k] = bad[k]
        p.grad = torch.ones(3)
        with pytest.raises(by_keyword.type):
            opt.step()
        assert torch.equal(p.detach(), torch.zeros(3)) and not opt.state[p]


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
                                      ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
                                      ("Adam", dict(lr=1e-2, maximize=True, amsgrad=True)),
                                      ("NAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
                                      ("RAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
                                      ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True, maximize=True))])  # fmt: skip
def test_group_keys_and_loaded_torch_state_dicts_are_honoured(name, kw):
    """The options as group keys of one group (the other keeps the defaults) and from a torch
    state_dict loaded mid-run, against torch."""
    ours, theirs = _twins(4)
    o = getattr(rt.optim, name)([{"params": ours[:2], **kw}, {"params": ours[2:], "lr": kw["lr"]}])
    t = getattr(torch.optim, name)([{"params": theirs[:2], **kw}, {"params": theirs[2:], "lr": kw["lr"]}])
    assert _run_twins(o, t, ours, theirs, 5) < 1e-6
    ours, theirs = _twins()
    t = getattr(torch.optim, name)(theirs, **kw)
    o = getattr(rt.optim, name)(ours, lr=kw["lr"])  # made without the options: the state_dict brings them
    assert _run_twins(o, t, ours, theirs, 0) == 0
    _run_twins(t, t, theirs, theirs, 0)
    for a, b in zip(ours, theirs):
        b.grad = torch.ones_like(b)
    t.step()
    o.load_state_dict(copy.deepcopy(t.state_dict()))
    for a, b in zip(ours, theirs):
        a.data.copy_(b.detach())
    assert all(o.param_groups[0][k] == v for k, v in kw.items())
    assert _run_twins(o, t, ours, theirs, 5) < 1e-6


def test_options_regtune_implements_with_one_value_are_refused_by_name():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"AdamW implements the group option decoupled_weight_decay=True only"):
        rt.optim.AdamW([{"params": [p], "decoupled_weight_decay": False}])
    sd = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))]).state_dict()
    sd["param_groups"][0]["decoupled_weight_decay"] = False  # torch's AdamW would step as Adam
    opt = rt.optim.AdamW([p])
    with pytest.raises(ValueError, match=r"state_dict\['param_groups'\]\[0\]: AdamW implements .*decoupled_weight_decay"):
        opt.load_state_dict(sd)
    sd["param_groups"][0].update(decoupled_weight_decay=True, maximize="yes")
    with pytest.raises(TypeError, match=r"state_dict\['param_groups'\]\[0\]: maximize must be a bool"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["maximize"] is False  # nothing loaded
    with pytest.raises(ValueError, match=r"LAMB implements the group option rectify=False only"):
        rt.optim.LAMB([{"params": [p], "rectify": True}])
    with pytest.raises(ValueError, match=r"weight_decouple=False \(the reference's name of decoupled_weight_decay\) disagrees"):
        rt.optim.LAMB([{"params": [p], "weight_decouple": False, "decoupled_weight_decay": True}])


def test_lion_decoupled_weight_decay_divides_by_the_initial_lr_under_a_scheduler():
    """As lion-pytorch (its ``_init_lr``): under StepLR, with a parameter whose gradient is
    sometimes None (which rebuilds regtune's cached step), a group with its own lr, and a
    state_dict reloaded into a fresh optimizer mid-run."""
    lion_pytorch = pytest.importorskip("lion_pytorch")
    ours, theirs = _twins(4)
    kw = dict(lr=1e-2, weight_decay=0.5, decoupled_weight_decay=True)
    o = rt.optim.Lion([{"params": ours[:3]}, {"params": ours[3:], "lr": 3e-2}], **kw)
    t = lion_pytorch.Lion([{"params": theirs[:3]}, {"params": theirs[3:], "lr": 3e-2}], **kw)
    so, st = (torch.optim.lr_scheduler.StepLR(x, 2, 0.5) for x in (o, t))
    assert _run_twins(o, t, ours, theirs, 6, (so, st), none=lambda s, i: i == 1 and s % 3 == 1) < 1e-6
    o2 = rt.optim.Lion([{"params": ours[:3]}, {"params": ours[3:]}], **kw)
    o2.load_state_dict(copy.deepcopy(o.state_dict()))  # the groups' lr are the scheduled ones now
    assert o2.param_groups[1]["lr"] == t.param_groups[1]["lr"] < 3e-2 / 4
    assert _run_twins(o2, t, ours, theirs, 3, seed=3) < 1e-6


def test_nadam_keeps_torchs_running_mu_product_as_beta1_changes():
    """OneCycleLR(cycle_momentum=True) moves beta1 every step; then beta1 set by hand; the
    state_dict moves mu_product both ways."""
    ours, theirs = _twins()
    o, t = rt.optim.NAdam(ours, lr=1e-2), torch.optim.NAdam(theirs, lr=1e-2)
    scheds = [torch.optim.lr_scheduler.OneCycleLR(x, 5e-2, total_steps=40, cycle_momentum=True) for x in (o, t)]
    assert _run_twins(o, t, ours, theirs, 12, scheds, none=lambda s, i: i == 2 and s < 4) < 1e-6
    for x in (o, t):
        x.param_groups[0]["betas"] = (0.5, 0.99)
    assert _run_twins(o, t, ours, theirs, 4) < 1e-6
    for a, b in zip(ours, theirs):
        assert o.state[a]["mu_product"].item() == pytest.approx(t.state[b]["mu_product"].item(), rel=1e-6)
    assert o.state[ours[2]]["mu_product"].item() != o.state[ours[0]]["mu_product"].item()  # 4 steps fewer
    t2 = torch.optim.NAdam(theirs, lr=1e-2)
    t2.load_state_dict(copy.deepcopy(o.state_dict()))
    o.load_state_dict(copy.deepcopy(t.state_dict()))
    assert _run_twins(o, t2, ours, theirs, 4, seed=5) < 1e-6
    with pytest.raises(ValueError, match=r"mu_product must be in \[0, 1\]"):
        o.state[ours[0]]["mu_product"].fill_(2.0)
        o.step()


def test_lamb_counts_steps_per_group_as_pytorch_optimizer():
    po = pytest.importorskip("pytorch_optimizer")
    ours, theirs = _twins(4)
    o = rt.optim.LAMB([{"params": ours[:3]}, {"params": ours[3:]}], lr=1e-2, weight_decay=0.1)
    t = po.Lamb([{"params": theirs[:3]}, {"params": theirs[3:]}], lr=1e-2, weight_decay=0.1)
    # params[1] has no gradient on every third step; the last group none for its first 4 steps
    none = lambda s, i: (i == 1 and s % 3 == 0) or (i == 3 and s < 4)  # noqa: E731
    assert _run_twins(o, t, ours, theirs, 9, none=none) < 1e-6
    assert [g["step"] for g in o.param_groups] == [g["step"] for g in t.param_groups] == [9, 9]
    t2 = po.Lamb([{"params": theirs[:3]}, {"params": theirs[3:]}], lr=1e-2)
    t2.load_state_dict(copy.deepcopy(o.state_dict()))  # ours -> the reference and back
    o.load_state_dict(copy.deepcopy(t.state_dict()))
    # the reference's groups carry max_grad_norm=1.0 (its pre_norm's scale): not a clip here;
    # loaded, the groups are in regtune's terms
    assert o.param_groups[0]["max_grad_norm"] is None and o.param_groups[0]["decoupled_weight_decay"] is True
    assert "weight_decouple" not in o.param_groups[0] and o.state_dict()["param_groups"][0]["weight_decouple"] is True
    assert _run_twins(o, t2, ours, theirs, 4, seed=7) < 1e-6


# ------------------------------------------------------------- torch's own optimizer test table
def _optim_db():
    """torch's OptimizerInfo table, for the optimizers regtune has (empty when torch's test
    helpers cannot be imported: they need ``expecttest``)."""
    try:
        from torch.testing._internal.common_optimizers import optim_db
    except Exception:  # noqa: BLE001 (ImportError, or anything torch's test helpers raise)
        return []
    return [info for info in optim_db if info.optim_cls.__name__ in rt.optim.__all__]


def _db_cases():
    cases = []
    for info in _optim_db():
        for dtype in (torch.float32, torch.float64):
            for inp in info.optim_inputs_func(device="cpu", dtype=dtype):
                for impl in (None, *[i for i in info.supported_impls if i in ("foreach", "fused", "differentiable")]):
                    kw = dict(inp.kwargs, **({impl: True} if impl else {}))
                    cases.append(pytest.param(info.optim_cls, kw, dtype,
                                              id=f"{info.optim_cls.__name__}-{inp.desc}-{impl}-{str(dtype)[6:]}"))  # fmt: skip
    return cases or [pytest.param(None, None, None, marks=pytest.mark.skip("torch's optim_db needs expecttest"))]


def _copy_kw(kw):
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


@pytest.mark.parametrize("torch_cls, kw, dtype", _db_cases())
def test_torch_optim_db_configurations_match_or_are_refused_by_name(torch_cls, kw, dtype):
    """Issue 26: every CPU configuration of torch's optim_db (float32 and float64, each
    implementation flag torch lists for it) either steps as torch's optimizer does (5 steps,
    two parameter groups, one parameter whose gradient is None on a step) or is refused with an
    exception naming one of its options: nothing silently different."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (5,), (3, 4)]
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    ours = [torch.nn.Parameter(w.clone()) for w in init]
    theirs = [torch.nn.Parameter(w.clone()) for w in init]
    try:
        o = getattr(rt.optim, torch_cls.__name__)([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.02}], **_copy_kw(kw))
    except (TypeError, ValueError) as exc:
        assert any(k in str(exc) for k in kw), f"refused without naming an option of {kw}: {exc}"
        return
    t = torch_cls([{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.02}], **_copy_kw(kw))
    for step in range(5):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            g = None if (i == 1 and step == 2) else torch.randn(a.shape, generator=gen, dtype=dtype)
            a.grad, b.grad = (None, None) if g is None else (g.clone(), g.clone())
        o.step()
        t.step()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), **tol)


def _db_error_cases():
    cases = []
    for info in _optim_db():
        for err in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
            inp = err.optimizer_error_input
            # torch's own limits of its implementations (a tensor lr with foreach, mixed float and
            # tensor betas): regtune's one step has none of them
            if inp.params is not None or not inp.kwargs or "Tensor" in inp.desc or "both floats" in inp.desc:
                continue
            cases.append(pytest.param(info.optim_cls, inp.kwargs, id=f"{info.optim_cls.__name__}-{inp.desc}"))
    return cases or [pytest.param(None, None, marks=pytest.mark.skip("torch's optim_db needs expecttest"))]


@pytest.mark.parametrize("torch_cls, kw", _db_error_cases())
def test_what_torchs_optim_db_refuses_is_refused_by_name(torch_cls, kw):
    with pytest.raises((TypeError, ValueError)) as exc:
        getattr(rt.optim, torch_cls.__name__)([torch.nn.Parameter(torch.zeros(3))], **kw)
    assert any(k in str(exc.value) for k in kw), str(exc.value)


@pytest.mark.parametrize("name", ["AdamW", "SGD", "NAdam", "LAMB"])
def test_threads_stepping_one_optimizer_neither_lose_nor_invent_steps(name):
    """Issue 26: two Python threads stepping one optimizer give some serial order of the steps
    (with one constant gradient every order is the same: 2 x 25 steps in a row)."""
    import threading

    torch.manual_seed(0)
    shapes = [(64, 33), (129,), (7, 5)]
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kw = {"lr": 1e-2, **({"momentum": 0.9} if name == "SGD" else {})}
    opt, serial = getattr(rt.optim, name)(ps, **kw), getattr(rt.optim, name)(twins, **kw)
    for p, q in zip(ps, twins):
        p.grad = torch.randn(p.shape)
        q.grad = p.grad.clone()
    start = threading.Barrier(2)

    def work():
        start.wait()
        for _ in range(25):
            opt.step()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(50):
        serial.step()
    for p, q in zip(ps, twins):
        assert torch.equal(p.detach(), q.detach())
        assert int(opt.state[p]["step"]) == 50


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("AdamW", dict(lr=1e-2)), ("LAMB", dict(lr=1e-2))])
def test_max_grad_norm_clips_by_the_norm_of_every_gradient_of_the_step(name, kw):
    """Issue 26: with two groups, or a parameter whose gradient was None on a step (one regtune
    step per group and step count), max_grad_norm clipped each of those by its own norm; it is
    clip_grad_norm_ over every parameter of the optimizer."""
    ours, theirs = _twins(4)
    o = getattr(rt.optim, name)([{"params": ours[:3]}, {"params": ours[3:], "lr": kw["lr"] / 2}], max_grad_norm=1.0, **kw)
    if name == "LAMB":
        pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
        t = pytorch_optimizer.Lamb([{"params": theirs[:3]}, {"params": theirs[3:], "lr": kw["lr"] / 2}], **kw)
    else:
        t = getattr(torch.optim, name)([{"params": theirs[:3]}, {"params": theirs[3:], "lr": kw["lr"] / 2}], **kw)
    gen = torch.Generator().manual_seed(4)
    for s in range(4):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            g = 3 * torch.randn(a.shape, generator=gen)
            a.grad, b.grad = (None, None) if (i == 1 and s == 0) else (g.clone(), g.clone())
        o.step()
        torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        t.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_a_copied_optimizer_steps_on_as_the_original():
    ps = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(2)]
    opt = rt.optim.NAdam(ps, lr=1e-2)
    for p in ps:
        p.grad = torch.ones(4, 3)
    opt.step()
    twin = copy.deepcopy(opt)  # its own parameters and state, its own lock
    qs = [q for g in twin.param_groups for q in g["params"]]
    for p, q in zip(ps, qs):
        p.grad, q.grad = torch.full((4, 3), 0.5), torch.full((4, 3), 0.5)
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, qs)) and twin._lock is not opt._lock


# ------------------------------------------------------------------------------------ FSDP2
class _Bilinear(torch.nn.Module):
    """A stack of linear layers and a bilinear one (a 3-D weight: a batch of matrices)."""

    def __init__(self):
        super().__init__()
        self.stack = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5), torch.nn.Tanh())
        self.bi = torch.nn.Bilinear(5, 5, 3)

    def forward(self, x):
        h = self.stack(x)
        return self.bi(h, h)


def _fsdp_model(shard=True, bilinear=False):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    # 5 rows: uneven shards; 1 row: process 1's shards are empty
    model = _Bilinear() if bilinear else torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))  # fmt: skip
    if not shard:
        return model
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Bilinear)):
            fully_shard(layer)
    return fully_shard(model)


def _fsdp_whole_tensor_rules(rank, world):
    """LAMB, LARS and Adafactor on shards (their norms and factors' sums all-reduced over the
    mesh) step as the same rule on the whole model in one process, given the mean of the
    processes' losses (FSDP2 averages their gradients): matrices split by rows (unevenly, one
    shard empty), vectors, and a batch of matrices (Bilinear's 3-D weight) split by matrices."""
    from torch.distributed.tensor import DTensor

    for name, kw in (("LAMB", dict(weight_decay=0.1)), ("LAMB", dict(max_grad_norm=0.5)),
                     ("LARS", dict(momentum=0.9, weight_decay=1e-2, trust_coefficient=0.02)),
                     ("Adafactor", dict(weight_decay=0.1)), ("Adafactor", dict(max_grad_norm=0.5))):  # fmt: skip
        a, whole = _fsdp_model(bilinear=True), _fsdp_model(shard=False, bilinear=True)
        opt = getattr(rt.optim, name)
        ours, ref = opt(a.parameters(), lr=1e-2, **kw), opt(whole.parameters(), lr=1e-2, **kw)
        gens = [torch.Generator().manual_seed(r) for r in range(world)]
        for _ in range(4):
            xs = [torch.randn(6, 8, generator=g) for g in gens]
            ours.zero_grad()
            a(xs[rank]).pow(2).mean().mul(20).backward()
            ours.step()
            ref.zero_grad()
            (sum(whole(x).pow(2).mean().mul(20) for x in xs) / world).backward()
            ref.step()
        start = _fsdp_model(shard=False, bilinear=True)
        for p, q, p0 in zip(a.parameters(), whole.parameters(), start.parameters()):
            assert isinstance(p, DTensor) and p.placements[0].is_shard()
            full = p.full_tensor()
            torch.testing.assert_close(full, q.detach(), rtol=1e-5, atol=1e-6, msg=f"{name} {kw} {tuple(p.shape)}")
            assert not torch.equal(full, p0)  # it stepped


def _fsdp_worker(rank, world, port):
    import os

    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name, clip in (("AdamW", None), ("AdamW", 0.5), ("NAdam", 0.5)):
            a, b = _fsdp_model(), _fsdp_model()
            ours = getattr(rt.optim, name)(a.parameters(), lr=1e-2, weight_decay=0.1, max_grad_norm=clip)
            ref = getattr(torch.optim, name)(b.parameters(), lr=1e-2, weight_decay=0.1)
            gen = torch.Generator().manual_seed(rank)  # each process its own batch
            for _ in range(4):
                x = torch.randn(6, 8, generator=gen)
                for model, opt in ((a, ours), (b, ref)):
                    opt.zero_grad()
                    model(x).pow(2).mean().mul(20).backward()
                    if opt is ref and clip:
                        norm = torch.nn.utils.clip_grad_norm_(b.parameters(), clip)
                        assert float(norm.full_tensor() if isinstance(norm, DTensor) else norm) > clip  # it clips
                    opt.step()
            for p, q in zip(a.parameters(), b.parameters()):
                assert isinstance(p, DTensor) and isinstance(ours.state[p]["exp_avg"], DTensor)
                torch.testing.assert_close(p.to_local(), q.to_local(), rtol=1e-5, atol=1e-6)
            ref.load_state_dict(ours.state_dict())  # torch's layout: DTensor state, loads both ways
            ours.load_state_dict(ref.state_dict())
        _fsdp_whole_tensor_rules(rank, world)
        from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

        cols = torch.nn.Parameter(distribute_tensor(torch.ones(4, 6), init_device_mesh("cpu", (world,)), [Shard(1)]))
        with pytest.raises(TypeError, match=r"params\[0\] is a DTensor placed \(Shard\(dim=1\),\): Adafactor steps "):
            rt.optim.Adafactor([cols])
        # LAMB's norms are sums over every element: any placement steps as the whole tensor
        mesh = init_device_mesh("cpu", (world,))
        full = torch.linspace(-1, 1, 24).reshape(4, 6)
        grad = torch.cos(torch.arange(24.0)).reshape(4, 6)
        cols = torch.nn.Parameter(distribute_tensor(full.clone(), mesh, [Shard(1)]))
        whole = torch.nn.Parameter(full.clone())
        cols.grad, whole.grad = distribute_tensor(grad, mesh, [Shard(1)]), grad.clone()
        for opt in (rt.optim.LAMB([cols], lr=0.1, weight_decay=0.1), rt.optim.LAMB([whole], lr=0.1, weight_decay=0.1)):
            opt.step()
        torch.testing.assert_close(cols.full_tensor(), whole.detach(), rtol=1e-6, atol=1e-7)
        assert not torch.equal(whole.detach(), full)
    finally:
        dist.destroy_process_group()


def test_fsdp2_shards_step_as_torchs_adamw_over_two_gloo_processes():
    """Issue 26: parameters sharded by fully_shard (DTensors) step their local shards, clipping
    by the norm over the whole mesh, as torch's own optimizers under FSDP2 (2 CPU processes,
    gloo); LAMB, LARS and Adafactor take their norms and factors over the mesh (Adafactor
    refuses shards of any axis but the leading one, by name)."""
    import socket

    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    pytest.importorskip("torch.distributed.fsdp").fully_shard  # noqa: B018 (torch >= 2.6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_fsdp_worker, args=(2, port), nprocs=2)


def test_a_refused_param_group_is_not_kept():
    opt = rt.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "betas": (0.9, 1.0)})
    assert len(opt.param_groups) == 1


def test_a_scheduled_momentum_swaps_the_rule_not_the_state():
    """OneCycleLR(cycle_momentum=True) sets betas at every step: the cached regtune step takes
    the new rule without allocating its state again (it made a new optimizer each step: 7x the
    step time on 20 512x512 tensors), and steps as torch."""
    made = []

    class Counted(ro.Adam):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    ours, theirs = _twins()
    o, t = rt.optim.Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2)
    o._regtune = Counted
    scheds = [torch.optim.lr_scheduler.OneCycleLR(x, 5e-2, total_steps=20, cycle_momentum=True) for x in (o, t)]
    assert _run_twins(o, t, ours, theirs, 1, scheds) < 1e-6
    made.clear()
    assert _run_twins(o, t, ours, theirs, 6, scheds) < 1e-6
    assert o.param_groups[0]["betas"][0] != 0.95 and not made
    o.param_groups[0]["maximize"] = True  # not the rule's: a new regtune step
    t.param_groups[0]["maximize"] = True
    assert _run_twins(o, t, ours, theirs, 2, scheds) < 1e-6 and made


def test_a_loaded_state_the_rule_does_not_keep_is_refused_by_name():
    """An SGD momentum buffer loaded into Adam was taken, ignored, and Adam started from zero
    moments at step 2; torch's Adam raises a KeyError there."""
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sgd.step()
    sd = sgd.state_dict()
    sd["param_groups"][0] = {k: v for k, v in sd["param_groups"][0].items() if k in ("params", "lr", "weight_decay")}
    opt = rt.optim.Adam([p], lr=0.1)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['momentum_buffer'\]: Adam with these options keeps no"):
        opt.load_state_dict(sd)
    assert not opt.state[p]
    adam = torch.optim.Adam([p], lr=0.1, amsgrad=True)
    adam.step()
    sd = adam.state_dict()
    sd["param_groups"][0]["amsgrad"] = False  # its max_exp_avg_sq would be kept and never read
    with pytest.raises(ValueError, match=r"\['max_exp_avg_sq'\]: Adam with these options keeps no"):
        opt.load_state_dict(sd)


_OTHER_VALUES = {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1, "momentum": 0.5, "dampening": 0.1,
                 "nesterov": True, "amsgrad": True, "alpha": 0.9, "centered": True, "lr_decay": 0.1,
                 "initial_accumulator_value": 0.1, "momentum_decay": 0.01, "rho": 0.8, "grad_averaging": False,
                 "trust_clamp": 0.5, "trust_coefficient": 0.01, "warmup_steps": 2, "r": 0.5, "weight_lr_power": 1.0,
                 "beta2_decay": -0.5, "d": 2.0, "l1": 1e-3, "prox_l1": 1e-3, "max_grad_norm": 0.5, "maximize": True}  # fmt: skip


@pytest.mark.parametrize("name", rt.optim.__all__)
def test_a_group_key_steps_as_the_keyword(name):
    """Every hyperparameter (a value other than its default; decoupled_weight_decay flipped) as a
    param-group key steps bit for bit as the keyword does, or both are refused alike."""
    cls = getattr(rt.optim, name)
    probe = cls([torch.zeros(1)])
    values = {k: v for k, v in _OTHER_VALUES.items() if k in probe._keys}
    if "decoupled_weight_decay" in probe._keys:
        values["decoupled_weight_decay"] = not probe.defaults["decoupled_weight_decay"]
    assert set(probe._keys) - set(values) <= {"precision", "state_dtype", "seed", "min_8bit_size"}  # 16- and 8-bit state: tested apart
    for k, v in values.items():
        runs = []
        for how in ("keyword", "group"):
            ps = [torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4) + i) for i in range(2)]
            try:
                opt = cls(ps, **{k: v}) if how == "keyword" else cls([{"params": ps, k: v}])
            except (TypeError, ValueError) as exc:
                runs.append(repr(exc))
                continue
            for t in range(3):
                for i, p in enumerate(ps):
                    p.grad = torch.cos(torch.arange(12.0).reshape(3, 4) * (t + 1) + i)
                opt.step()
            runs.append([p.detach().clone() for p in ps])
        a, b = runs
        assert type(a) is type(b), (k, a, b)
        assert a == b if isinstance(a, str) else all(torch.equal(x, y) for x, y in zip(a, b)), k


def test_schedule_free_fills_z_of_a_parameter_first_stepped_late():
    """z is the parameter's copy at its own first step, as schedulefree's; it stayed zeros for a
    parameter whose first gradient came after the group's first step (the group's count k > 0)."""
    sfree = pytest.importorskip("schedulefree")
    ours, theirs = _twins(3)
    kw = dict(lr=1e-2, weight_decay=0.1, warmup_steps=2)
    o = rt.optim.ScheduleFreeAdamW([{"params": ours[:2]}, {"params": ours[2:]}], **kw)
    t = sfree.AdamWScheduleFree([{"params": theirs[:2]}, {"params": theirs[2:]}], **kw)
    t.train()
    # params[1] from step 3 on; the second group idle for its first 2 steps (its k advances)
    assert _run_twins(o, t, ours, theirs, 6, none=lambda s, i: (i == 1 and s < 3) or (i == 2 and s < 2)) < 1e-12
    assert [g["k"] for g in o.param_groups] == [g["k"] for g in t.param_groups] == [6, 6]


@pytest.mark.parametrize("kw", [dict(precision="stochastic", seed=5), dict(precision="master"),
                                dict(state_dtype=torch.bfloat16)])  # fmt: skip
def test_16_bit_options_as_group_keys_step_as_the_keywords(kw):
    runs = []
    for how in ("keyword", "group"):
        w = torch.linspace(-1, 1, 40).reshape(8, 5).to(torch.bfloat16).requires_grad_()
        opt = rt.optim.AdamW([w], lr=1e-2, **kw) if how == "keyword" else rt.optim.AdamW([{"params": [w], **kw}], lr=1e-2)
        for t in range(3):
            w.grad = torch.cos(torch.arange(40.0).reshape(8, 5) * (t + 1)).to(torch.bfloat16)
            opt.step()
        runs.append((w.detach().view(torch.int16).clone(), {k: v.dtype for k, v in opt.state[w].items()}))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


_L = torch.optim.lr_scheduler
_SCHEDULERS = {
    "LambdaLR": lambda o: _L.LambdaLR(o, lambda e: 0.9**e), "StepLR": lambda o: _L.StepLR(o, 2, 0.5),
    "MultiStepLR": lambda o: _L.MultiStepLR(o, [2, 5], 0.3), "LinearLR": lambda o: _L.LinearLR(o, 0.2, 1.0, 4),
    "PolynomialLR": lambda o: _L.PolynomialLR(o, 8, 2.0),
    "CosineAnnealingWarmRestarts": lambda o: _L.CosineAnnealingWarmRestarts(o, 3),
    "CyclicLR": lambda o: _L.CyclicLR(o, 1e-3, 1e-2, step_size_up=2),  # cycles SGD's momentum / Adam's beta1
    "OneCycleLR": lambda o: _L.OneCycleLR(o, 1e-2, total_steps=12),
    "SequentialLR": lambda o: _L.SequentialLR(o, [_L.LinearLR(o, 0.1, 1.0, 3), _L.ExponentialLR(o, 0.9)], [3]),
    "ReduceLROnPlateau": lambda o: _L.ReduceLROnPlateau(o, patience=0, factor=0.5),
}  # fmt: skip


@pytest.mark.parametrize("sched", list(_SCHEDULERS))
@pytest.mark.parametrize("name, kw", [("Adam", dict(lr=1e-2)), ("SGD", dict(lr=1e-2, momentum=0.9)),
                                      ("NAdam", dict(lr=1e-2)), ("RMSprop", dict(lr=1e-2, momentum=0.5))])  # fmt: skip
def test_torchs_lr_schedulers_drive_it_as_torchs_own(name, kw, sched):
    """float64, 10 steps: the same bits as torch's optimizer under each scheduler (up to double
    rounding), momentum and beta1 cycled too."""
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64)) for _ in range(2)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    o, t = getattr(rt.optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    so, st = _SCHEDULERS[sched](o), _SCHEDULERS[sched](t)
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, generator=gen, dtype=torch.float64)
            a.grad, b.grad = g.clone(), g.clone()
        o.step()
        t.step()
        for s in (so, st):
            s.step(1.0) if sched == "ReduceLROnPlateau" else s.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


def test_a_reloaded_lamb_takes_options_set_by_hand_under_regtunes_names():
    p = torch.nn.Parameter(torch.ones(3))
    opt = rt.optim.LAMB([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.ones(3)
    opt.step()
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # (its groups carry pytorch-optimizer's names)
    opt.param_groups[0]["decoupled_weight_decay"] = False
    opt.step()  # the option set by hand is the one read: no disagreement with a stale alias
    twin = torch.nn.Parameter(torch.ones(3))
    ref = rt.optim.LAMB([twin], lr=0.1, weight_decay=0.5)
    twin.grad = torch.ones(3)
    ref.step()
    ref.param_groups[0]["decoupled_weight_decay"] = False
    ref.step()
    assert torch.equal(p, twin)


def _changes():
    """What a user (or torch) may change between two steps, each as fn(opt, params, step index)."""

    def swap_storage(o, ps, i):
        ps[0].data = ps[0].data.clone()

    def replace_state_tensor(o, ps, i):
        st = o.state[ps[1]]
        st["exp_avg"] = torch.full_like(st["exp_avg"], 0.5)

    def write_step_in_place(o, ps, i):
        o.state[ps[2]]["step"].fill_(40.0)

    def reset_state(o, ps, i):
        o.state[ps[0]] = {}

    def new_betas(o, ps, i):
        o.param_groups[0]["betas"] = (0.8, 0.95)

    def betas_list_in_place(o, ps, i):
        o.param_groups[0]["betas"] = [0.85, 0.99]

    def betas_list_edited(o, ps, i):
        o.param_groups[0]["betas"][0] = 0.7

    def lr(o, ps, i):
        o.param_groups[0]["lr"] = 0.003 * (i + 1)

    def tensor_lr(o, ps, i):
        o.param_groups[0]["lr"] = torch.tensor(0.002)

    def weight_decay(o, ps, i):
        o.param_groups[0]["weight_decay"] = 0.3

    def amsgrad(o, ps, i):
        o.param_groups[0]["amsgrad"] = True

    def maximize(o, ps, i):
        o.param_groups[0]["maximize"] = True

    def no_grad_once(o, ps, i):
        ps[1].grad = None

    def strided_grad(o, ps, i):
        ps[0].grad = ps[0].grad.t().contiguous().t()  # same values, column-major

    def reload(o, ps, i):
        o.load_state_dict(copy.deepcopy(o.state_dict()))

    def new_group(o, ps, i):
        extra = torch.nn.Parameter(torch.ones(3, 3))
        extra.grad = torch.ones(3, 3)
        o.add_param_group({"params": [extra], "lr": 0.01})

    def clear_state(o, ps, i):
        o.state.clear()

    def swap_states(o, ps, i):  # each parameter's state dict is the other's
        o.state[ps[0]], o.state[ps[2]] = o.state[ps[2]], o.state[ps[0]]

    def copy_state_dict(o, ps, i):  # a new dict holding the same tensors, then one of them replaced
        o.state[ps[1]] = dict(o.state[ps[1]])
        o.state[ps[1]]["exp_avg_sq"] = o.state[ps[1]]["exp_avg_sq"] * 2

    return [swap_storage, replace_state_tensor, write_step_in_place, reset_state, new_betas, betas_list_in_place,
            betas_list_edited, lr, tensor_lr, weight_decay, amsgrad, maximize, no_grad_once, strided_grad, reload,
            new_group, clear_state, swap_states, copy_state_dict]  # fmt: skip


@pytest.mark.parametrize("change", _changes(), ids=lambda f: f.__name__)
def test_a_repeated_step_takes_every_change_as_the_full_step(change, monkeypatch):
    """Issue 26: a step that repeats the last one (regtune.torch.optim._Plan, a microsecond per
    parameter) sees every change made since, as a step that finds everything out again does:
    the same bits, with the change made after the second of six steps."""
    import regtune.torch.optim as rto

    taken = []
    plan_step = rto._Plan.step
    monkeypatch.setattr(rto._Plan, "step", lambda plan, opt: taken.append(plan_step(plan, opt)) or taken[-1])

    def run(plans):
        torch.manual_seed(3)
        ps = [torch.nn.Parameter(torch.randn(3, 3)) for _ in range(3)]
        opt = rt.optim.AdamW(ps, lr=0.01, betas=[0.9, 0.999], weight_decay=0.1)
        gen = torch.Generator().manual_seed(4)
        for i in range(6):
            for p in ps:
                p.grad = torch.randn(3, 3, generator=gen)
            if i == 2:
                change(opt, ps, i)
            if not plans:
                opt._plan = None
            opt.step()
        return [p.detach().clone() for p in ps]

    full = run(False)
    assert taken == []
    fast = run(True)
    assert taken[0] is True  # the second step repeated the first
    for a, b in zip(full, fast):
        assert torch.equal(a, b)


def test_a_training_loop_repeats_its_steps_and_bumps_the_step_counts():
    """The plan is taken at every step of a plain loop (what makes a step cost about a
    microsecond per parameter), and torch's layout of the state is kept: ``step`` a float32
    0-d tensor per parameter, one more at every step, as after torch's own steps."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    opt = rt.optim.AdamW(model.parameters(), lr=0.01)
    ref = torch.optim.AdamW(twin.parameters(), lr=0.01)
    x = torch.randn(16, 4)
    taken = 0
    for i in range(5):
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
        taken += opt._plan is not None
        opt.step()
        ref.step()
    assert taken == 4
    for p, q in zip(model.parameters(), twin.parameters()):
        st, rs = opt.state[p]["step"], ref.state[q]["step"]
        assert st.dtype == rs.dtype == torch.float32 and st.dim() == 0 and float(st) == float(rs) == 5.0
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_the_step_on_torchs_openmp_threads_equals_it_on_regtunes_pool():
    """regtune.torch's kernels run their chunks on torch's OpenMP team (regtune.torch._openmp):
    the same chunks, the same bits as on regtune's own pool, at 1 and 3 threads."""
    from regtune import _core
    from regtune.torch import _openmp

    if not _openmp.available:
        pytest.skip("torch does not run on an OpenMP runtime here")
    torch.manual_seed(0)
    base = torch.randn(1 << 19)
    grads = [torch.randn(1 << 19) for _ in range(3)]
    results = []
    for team, threads in ((False, 1), (True, 1), (True, 3), (False, 3)):
        p = torch.nn.Parameter(base.clone())
        opt = rt.optim.AdamW([p], lr=0.01, weight_decay=0.1)
        before = _core.use_openmp_team(False)
        prev = regtune.get_num_threads()
        regtune.set_num_threads(threads)
        try:
            if not team:
                opt_step = opt._step_work
                opt._step_work = lambda work: ro.step_all([(r, gs) for r, _, gs in work])  # regtune's pool
            for g in grads:
                p.grad = g.clone()
                opt.step()
        finally:
            regtune.set_num_threads(prev)
            _core.use_openmp_team(before)
        results.append(p.detach().clone())
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_a_forked_child_steps_on_its_own_threads():
    """After fork the child's OpenMP threads are gone: regtune drops torch's team there and
    steps on its own pool (no hang), with the parent's bits."""
    import multiprocessing as mp

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(1 << 19))
    p.grad = torch.randn(1 << 19)
    opt = rt.optim.AdamW([p], lr=0.01)
    opt.step()  # the parent has used the team
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child():
        opt.step()
        q.put(p.detach().numpy().copy())

    proc = ctx.Process(target=child)
    proc.start()
    got = q.get(timeout=60)
    proc.join(60)
    assert proc.exitcode == 0
    opt.step()
    np.testing.assert_array_equal(got, p.detach().numpy())


@pytest.mark.parametrize("name, kw", [("SGD", dict(momentum=0.9)), ("AdamW", {}), ("AdamW", dict(state_dtype="int8"))])
def test_state_tensors_are_cache_line_aligned(name, kw):
    """State made at the first step is in torch's (64-byte aligned) allocation: a vector of the
    step never straddles two cache lines (NumPy's allocations are 16-byte aligned)."""
    ps = [torch.nn.Parameter(torch.randn(s)) for s in ((70, 70), (5,), (4099,))]
    for p in ps:
        p.grad = torch.randn(p.shape)
    opt = getattr(rt.optim, name)(ps, lr=0.01, **kw)
    opt.step()
    tensors = [t for p in ps for t in opt.state[p].values() if t.dim() > 0]
    assert tensors and all(t.data_ptr() % 64 == 0 for t in tensors)

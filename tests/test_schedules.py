"""regtune.schedules against their closed-form formulas, and against torch.optim.lr_scheduler
over 1000 steps when torch is installed.

torch's StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR and PolynomialLR compute each
value from the previous one (their "chainable" form); regtune evaluates the closed form, so
those comparisons use a 1e-12 relative tolerance (with an absolute floor of 1e-15 * the peak,
for values that reach zero). The others must give the same floats.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import regtune
from regtune import schedules as S

STEPS = 1000
BASE = 0.1


def values(schedule, n=STEPS):
    return np.array([schedule(t) for t in range(n)])


def close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-15 * BASE)


# ------------------------------------------------------------------------------ formulas

FORMULAS = [
    (lambda: S.constant(BASE), lambda t: BASE),
    (lambda: S.step_decay(BASE, 30, 0.5), lambda t: BASE * 0.5 ** (t // 30)),
    (lambda: S.multistep(BASE, [300, 100, 600], 0.3), lambda t: BASE * 0.3 ** sum(t >= m for m in (100, 300, 600))),
    (lambda: S.exponential_decay(BASE, 0.995), lambda t: BASE * 0.995**t),
    (lambda: S.cosine_annealing(BASE, 400, 1e-3),
     lambda t: 1e-3 + (BASE - 1e-3) * (1 + math.cos(math.pi * t / 400)) / 2),
    (lambda: S.polynomial_decay(BASE, 700, 2.0, 1e-4), lambda t: 1e-4 + (BASE - 1e-4) * (1 - min(t, 700) / 700) ** 2),
    (lambda: S.linear_warmup(S.constant(BASE), 50, 0.2), lambda t: BASE * (0.2 + 0.8 * t / 50) if t < 50 else BASE),
]  # fmt: skip


@pytest.mark.parametrize("make, formula", FORMULAS, ids=lambda x: "")
def test_closed_form(make, formula):
    close(values(make()), [formula(t) for t in range(STEPS)])


def test_cosine_warm_restarts_formula():
    s = S.cosine_warm_restarts(BASE, T_0=10, T_mult=2, eta_min=0.01)
    starts = [0, 10, 30, 70, 150, 310, 630]  # cycles of 10, 20, 40, ...
    for t in range(STEPS):
        k = max(i for i, st in enumerate(starts) if st <= t)
        T_i, T_cur = 10 * 2**k, t - starts[k]
        assert s(t) == pytest.approx(0.01 + (BASE - 0.01) * (1 + math.cos(math.pi * T_cur / T_i)) / 2, rel=1e-14)
    s1 = S.cosine_warm_restarts(BASE, T_0=7)
    assert all(s1(t) == s1(t % 7) for t in range(100))


def test_one_cycle_shape():
    s = S.one_cycle(1.0, total_steps=STEPS, pct_start=0.25)
    v = values(s)
    assert v[0] == pytest.approx(1 / 25) and v[249] == 1.0 and v[-1] == pytest.approx(1 / 25 / 1e4)
    assert np.all(np.diff(v[:250]) > 0) and np.all(np.diff(v[250:]) < 0)
    assert s(5000) == v[-1]  # holds the final value (torch raises)


def test_reduce_on_plateau():
    s = S.ReduceOnPlateau(1.0, factor=0.5, patience=2, cooldown=1, min_value=0.2)
    got = [s.step(m) for m in [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]]
    # bad epochs 1, 2, 3 > patience -> 0.5 (cooldown 1 epoch), then again 3 bad -> 0.25, -> 0.2 (floor)
    assert got == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2]
    assert s(123) == 0.2
    state = s.state_dict()
    s2 = S.ReduceOnPlateau(1.0, factor=0.5, patience=2, cooldown=1, min_value=0.2)
    s2.load_state_dict(state)
    assert s2.state_dict() == state


def test_plugs_into_optimizer():
    """The optimizer calls the schedule with the number of steps taken (0 first)."""
    seen = []
    sched = S.step_decay(0.5, 2, 0.1)
    w = np.zeros(3)
    opt = regtune.optim.SGD([w], lr=lambda t: seen.append(t) or sched(t))
    for _ in range(4):
        opt.step([np.ones(3)])
    assert seen == [0, 1, 2, 3]
    np.testing.assert_allclose(w, -(0.5 + 0.5 + 0.05 + 0.05))


def test_get_by_name():
    for name in S.NAMES:
        s = S.get(name, 0.1, 100)
        assert 0 <= s(0) <= 0.1 + 1e-15
    with pytest.raises(ValueError, match="unknown schedule 'cosinus'; choose one of constant"):
        S.get("cosinus", 0.1, 100)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: S.step_decay(0.1, 0), "step_decay requires a positive step_size, got step_size=0"),
        (lambda: S.step_decay(0.1, 2.5), "step_decay requires an integer step_size, got step_size=2.5"),
        (lambda: S.exponential_decay(-1.0, 0.9), "init_value must be in \\[0, inf\\), got init_value=-1.0"),
        (lambda: S.cosine_annealing(0.1, 10, eta_min=float("nan")), "eta_min must be finite, got eta_min=nan"),
        (lambda: S.multistep(0.1, [10, -5]), "multistep requires a positive milestones\\[1\\], got milestones\\[1\\]=-5"),
        (lambda: S.cosine_warm_restarts(0.1, 10, T_mult=0), "requires a positive T_mult, got T_mult=0"),
        (lambda: S.linear_warmup(0.1, 10, start_factor=1.5), "start_factor must be in \\[0, 1\\], got start_factor=1.5"),
        (lambda: S.one_cycle(0.1, 100, anneal_strategy="cosine"), "anneal_strategy 'cos' or 'linear', got anneal_strategy='cosine'"),
        (lambda: S.one_cycle(0.1, 100, pct_start=2.0), "pct_start must be in \\[0, 1\\], got pct_start=2.0"),
        (lambda: S.polynomial_decay(0.1, 0), "polynomial_decay requires a positive total_steps, got total_steps=0"),
        (lambda: S.ReduceOnPlateau(0.1, factor=1.0), "factor must be in \\[0, 1\\), got factor=1.0"),
        (lambda: S.ReduceOnPlateau(0.1, mode="up"), "mode 'min' or 'max', got mode='up'"),
    ],
)  # fmt: skip
def test_checked_when_built(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_negative_count():
    with pytest.raises(ValueError, match="count must be >= 0"):
        S.constant(0.1)(-1)


# ------------------------------------------------------------------------------ torch


def torch_values(make_scheduler, n=STEPS, metrics=None):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE, momentum=0.9)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    out = []
    with warnings.catch_warnings():
        # SequentialLR passes an epoch to its child schedulers internally, which torch itself
        # reports as deprecated; and stepping a scheduler before any optimizer step warns.
        warnings.simplefilter("ignore", UserWarning)
        for t in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(*([metrics[t]] if metrics is not None else []))
    return np.array(out)


CHAINABLE = [
    (lambda L, o: L.StepLR(o, 30, 0.5), lambda: S.step_decay(BASE, 30, 0.5)),
    (lambda L, o: L.MultiStepLR(o, [100, 300, 600], 0.3), lambda: S.multistep(BASE, [100, 300, 600], 0.3)),
    (lambda L, o: L.ExponentialLR(o, 0.995), lambda: S.exponential_decay(BASE, 0.995)),
    (lambda L, o: L.CosineAnnealingLR(o, 1000), lambda: S.cosine_annealing(BASE, 1000)),
    (lambda L, o: L.CosineAnnealingLR(o, 300, 1e-3), lambda: S.cosine_annealing(BASE, 300, 1e-3)),  # past T_max
    (lambda L, o: L.PolynomialLR(o, 700, 2.0), lambda: S.polynomial_decay(BASE, 700, 2.0)),
]
EXACT = [
    (lambda L, o: L.CosineAnnealingWarmRestarts(o, 10, 2, 1e-3), lambda: S.cosine_warm_restarts(BASE, 10, 2, 1e-3)),
    (lambda L, o: L.CosineAnnealingWarmRestarts(o, 64), lambda: S.cosine_warm_restarts(BASE, 64)),
    (lambda L, o: L.OneCycleLR(o, BASE, total_steps=STEPS, cycle_momentum=False),
     lambda: S.one_cycle(BASE, STEPS)),
    (lambda L, o: L.OneCycleLR(o, BASE, total_steps=STEPS, pct_start=0.2, anneal_strategy="linear",
                               three_phase=True, cycle_momentum=False),
     lambda: S.one_cycle(BASE, STEPS, pct_start=0.2, anneal_strategy="linear", three_phase=True)),
    (lambda L, o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 100), L.ExponentialLR(o, 0.999)], milestones=[100]),
     lambda: S.linear_warmup(S.exponential_decay(BASE, 0.999), 100, 0.1)),
    (lambda L, o: L.SequentialLR(o, [L.LinearLR(o, 0.25, 1.0, 50), L.CosineAnnealingLR(o, 950)], milestones=[50]),
     lambda: S.linear_warmup(S.cosine_annealing(BASE, 950), 50, 0.25)),
]  # fmt: skip


@pytest.mark.parametrize("torch_sched, ours", CHAINABLE, ids=lambda x: "")
def test_chainable_against_torch(torch_sched, ours):
    close(values(ours()), torch_values(torch_sched))


@pytest.mark.parametrize("torch_sched, ours", EXACT, ids=lambda x: "")
def test_against_torch(torch_sched, ours):
    got, want = values(ours()), torch_values(torch_sched)
    # SequentialLR's children are chainable after the milestone (ExponentialLR, cosine)
    close(got, want)


def test_one_cycle_and_restarts_bit_equal_torch():
    for torch_sched, ours in EXACT[:4]:
        assert np.array_equal(values(ours()), torch_values(torch_sched))


def test_reduce_on_plateau_against_torch():
    rng = np.random.default_rng(0)
    # a noisy loss that plateaus in stretches, so that reductions and cooldowns happen
    metrics = np.repeat(np.maximum(1.0 - np.arange(100) / 50, 0.1), 10) + rng.normal(0, 1e-3, STEPS)
    kw = dict(factor=0.5, patience=7, threshold=1e-3, cooldown=3, eps=1e-8)
    want = torch_values(lambda L, o: L.ReduceLROnPlateau(o, min_lr=1e-4, **kw), metrics=metrics)
    s = S.ReduceOnPlateau(BASE, min_value=1e-4, **kw)
    got = []
    for m in metrics:
        got.append(s(0))
        s.step(m)
    assert np.array_equal(got, want)
    assert len(set(got)) > 3  # it did reduce


# ------------------------------------------------------------------- hostile input (issue 16)
# (schedule builder, the integer argument, the other arguments)
_INT_ARGS = [
    (S.step_decay, "step_size", dict(init_value=0.1)),
    (S.cosine_annealing, "T_max", dict(init_value=0.1)),
    (S.cosine_warm_restarts, "T_0", dict(init_value=0.1)),
    (S.cosine_warm_restarts, "T_mult", dict(init_value=0.1, T_0=5)),
    (S.linear_warmup, "warmup_steps", dict(schedule=0.1)),
    (S.one_cycle, "total_steps", dict(max_value=0.1)),
    (S.polynomial_decay, "total_steps", dict(init_value=0.1)),
]
_BAD_INTS = [(0, ValueError, "requires a positive"), (-1, ValueError, "requires a positive"),
             (-(2**70), ValueError, "requires a positive"), (2.5, TypeError, "requires an integer"),
             (10.0, TypeError, "requires an integer"), (math.nan, TypeError, "requires an integer"),
             (math.inf, TypeError, "requires an integer"), (True, TypeError, "requires an integer"),
             ("10", TypeError, "requires an integer"), (None, TypeError, "requires an integer"),
             (np.float64(3.0), TypeError, "requires an integer")]  # fmt: skip


@pytest.mark.parametrize("make, arg, kw", _INT_ARGS, ids=lambda v: getattr(v, "__name__", v if isinstance(v, str) else ""))
@pytest.mark.parametrize("bad, exc, what", _BAD_INTS, ids=repr)
def test_hostile_integer_arguments_are_named(make, arg, kw, bad, exc, what):
    with pytest.raises(exc, match=rf"{make.__name__} {what} {arg}, got {arg}="):
        make(**kw, **{arg: bad})


_FLOAT_ARGS = [
    (S.constant, "value", dict()),
    (S.step_decay, "gamma", dict(init_value=0.1, step_size=3)),
    (S.exponential_decay, "init_value", dict(gamma=0.9)),
    (S.exponential_decay, "gamma", dict(init_value=0.1)),
    (S.cosine_annealing, "eta_min", dict(init_value=0.1, T_max=3)),
    (S.linear_warmup, "start_factor", dict(schedule=0.1, warmup_steps=3)),
    (S.one_cycle, "div_factor", dict(max_value=0.1, total_steps=3)),
    (S.polynomial_decay, "power", dict(init_value=0.1, total_steps=3)),
    (S.ReduceOnPlateau, "factor", dict(init_value=0.1)),
]
_BAD_FLOATS = [(math.nan, ValueError, "must be finite"), (math.inf, ValueError, "must be finite"),
               (-1.0, ValueError, "must be in"), (True, TypeError, "must be a real number"),
               ("0.1", TypeError, "must be a real number"), (None, TypeError, "must be a real number")]  # fmt: skip


@pytest.mark.parametrize("make, arg, kw", _FLOAT_ARGS, ids=lambda v: getattr(v, "__name__", v if isinstance(v, str) else ""))
@pytest.mark.parametrize("bad, exc, what", _BAD_FLOATS, ids=repr)
def test_hostile_float_arguments_are_named(make, arg, kw, bad, exc, what):
    with pytest.raises(exc, match=rf"{make.__name__}: {arg} {what}"):
        make(**kw, **{arg: bad})


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: S.multistep(0.1, None), TypeError, "multistep requires a sequence of ints, got milestones=None"),
        (lambda: S.multistep(0.1, [3, 2.0]), TypeError, r"integer milestones\[1\], got milestones\[1\]=2.0"),
        (lambda: S.multistep(0.1, [0]), ValueError, r"positive milestones\[0\]"),
        (lambda: S.one_cycle(1e308, 10, div_factor=1e-10), ValueError, "max_value / div_factor overflows"),
        (lambda: S.one_cycle(0.1, 10, three_phase=1), TypeError, "bool three_phase"),
        (lambda: S.one_cycle(0.1, 10, anneal_strategy=["cos"]), ValueError, "anneal_strategy"),
        (lambda: S.one_cycle(0.1, 10, anneal_strategy=np.array(["cos", "linear"])), ValueError, "anneal_strategy"),
        (lambda: S.ReduceOnPlateau(0.1, mode=np.array(["min", "max"])), ValueError, "mode 'min' or 'max'"),
        (lambda: S.ReduceOnPlateau(0.1, threshold_mode={}), ValueError, "threshold_mode"),
        (lambda: S.ReduceOnPlateau(0.1, patience=2.5), TypeError, "patience must be an int"),
        (lambda: S.ReduceOnPlateau(0.1, patience=-1), ValueError, "patience must be >= 0"),
        (lambda: S.ReduceOnPlateau(0.1, cooldown=True), TypeError, "cooldown must be an int"),
        (lambda: S.ReduceOnPlateau(0.1, threshold_mode=None), ValueError, "threshold_mode"),
        (lambda: S.linear_warmup(lambda t: "fast", 5), TypeError, r"schedule\(0\) must be a real number"),
        (lambda: S.linear_warmup(lambda t: -0.1, 5), ValueError, r"schedule\(0\) must be in"),
        (lambda: S.linear_warmup("0.1", 5), TypeError, "linear_warmup: schedule must be a real number"),
        (lambda: S.get(["cosine"], 0.1, 10), TypeError, "name must be a str"),
        (lambda: S.get(None, 0.1, 10), TypeError, "name must be a str"),
        (lambda: S.get("cosine", 0.1, 2.9), TypeError, "total_steps must be an int, got 2.9"),
        (lambda: S.get("cosine", 0.1, -5), ValueError, "total_steps must be >= 0"),
        (lambda: S.get("cosine", 0.1, "100"), TypeError, "total_steps must be an int"),
        (lambda: S.get("cosine", math.nan, 10), ValueError, "init_value must be finite"),
    ],
)  # fmt: skip
def test_other_hostile_arguments_are_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError),
                                      (None, TypeError), (math.nan, TypeError)], ids=repr)  # fmt: skip
def test_hostile_counts_are_named(bad, exc):
    with pytest.raises(exc, match="count must be"):
        S.cosine_annealing(0.1, 10)(bad)


@pytest.mark.parametrize(
    "schedule, count, match",
    [
        (S.exponential_decay(1.0, 10.0), 400, r"exponential_decay overflows float64 at count=400 \(init_value=1.0, gamma=10.0\)"),
        (S.exponential_decay(1e300, 1e10), 1, r"exponential_decay overflows float64 at count=1"),
        (S.step_decay(1.0, 2, 1e10), 100, r"step_decay overflows float64 at count=100"),
        (S.multistep(1e300, [1, 2], 1e10), 2, r"multistep overflows float64 at count=2"),
        (S.cosine_annealing(0.1, 10), 10**400, r"cosine_annealing overflows float64 at count=1000"),
        (S.cosine_warm_restarts(0.1, 10, 3), 10**400, r"cosine_warm_restarts overflows float64"),
        (S.linear_warmup(S.exponential_decay(1.0, 10.0), 5), 500, r"exponential_decay overflows float64 at count=495"),
    ],
)  # fmt: skip
def test_a_value_that_overflows_is_a_named_value_error_not_inf(schedule, count, match):
    with pytest.raises(ValueError, match=match):
        schedule(count)


def test_a_user_callable_that_returns_garbage_later_is_named():
    s = S.linear_warmup(lambda t: 0.1 if t == 0 else "fast", 2)
    assert s(1) == pytest.approx(0.05)
    with pytest.raises(TypeError, match=r"linear_warmup\(3\) must be a real number, got 'fast'"):
        s(3)


@pytest.mark.parametrize("bad", ["abc", None, True, [0.5], {}, 1j, np.array([1.0, 2.0])], ids=repr)
def test_reduce_on_plateau_refuses_a_metric_that_is_not_a_real_number(bad):
    s = S.ReduceOnPlateau(0.1)
    with pytest.raises(TypeError, match="ReduceOnPlateau: metric must be a real number"):
        s.step(bad)
    assert s.num_bad_epochs == 0


def test_reduce_on_plateau_takes_numpy_scalars_and_a_nan_metric():
    s = S.ReduceOnPlateau(0.1, patience=0)
    assert s.step(np.float32(1.0)) == 0.1 and s.step(np.array(0.5)) == 0.1
    assert s.step(math.nan) == pytest.approx(0.01)  # a NaN loss is never better: a bad epoch


@pytest.mark.parametrize(
    "edit, exc, match",
    [
        (dict(num_bad_epochs=2.7), TypeError, r"state\['num_bad_epochs'\] must be an int, got 2.7"),
        (dict(cooldown_counter=-1), ValueError, r"state\['cooldown_counter'\] must be >= 0"),
        (dict(value=-0.1), ValueError, r"state\['value'\] must be in \[0, inf\)"),
        (dict(value=math.nan), ValueError, r"state\['value'\] must be finite"),
        (dict(value="0.1"), TypeError, r"state\['value'\] must be a real number"),
        (dict(best="1.0"), TypeError, r"state\['best'\] must be a real number"),
        (dict(extra=1), ValueError, "state must be a dict with keys"),
    ],
)
def test_reduce_on_plateau_load_state_dict_is_checked(edit, exc, match):
    s = S.ReduceOnPlateau(0.1)
    state = {**s.state_dict(), **edit}
    with pytest.raises(exc, match=match):
        s.load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        s.load_state_dict([("value", 0.1)])
    assert s.state_dict() == S.ReduceOnPlateau(0.1).state_dict()

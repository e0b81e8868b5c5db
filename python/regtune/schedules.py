"""Learning-rate (and weight-decay) schedules: callables of the step count.

A schedule maps ``count``, the number of optimizer steps taken so far (0 for the first step),
to a value. Pass one as an optimizer's ``lr=`` or ``weight_decay=``; the optimizer calls it
with its ``step_count`` before each step::

    >>> import numpy as np, regtune
    >>> from regtune import schedules
    >>> lr = schedules.linear_warmup(schedules.cosine_annealing(0.1, T_max=900), warmup_steps=100)
    >>> w = np.zeros(3, np.float32)
    >>> opt = regtune.optim.SGD([w], lr=lr, momentum=0.9)
    >>> [round(lr(t), 4) for t in (0, 50, 100, 550, 1000)]
    [0.0, 0.05, 0.1, 0.05, 0.0]

Arguments are checked when a schedule is built; a bad one is a ``ValueError`` (or
``TypeError``) that quotes it: ``step_decay requires a positive step_size, got step_size=0``.

Torch equivalence: where ``torch.optim.lr_scheduler`` has a scheduler of the same meaning,
``schedule(t)`` equals the learning rate torch's scheduler gives after ``t`` calls to
``scheduler.step()`` (one per optimizer step), for the same arguments and ``base_lr =
init_value``:

============================= ==================================================================
regtune                       torch.optim.lr_scheduler
============================= ==================================================================
constant(v)                   (none needed: a float lr)
step_decay                    StepLR(step_size, gamma)
multistep                     MultiStepLR(milestones, gamma)
exponential_decay             ExponentialLR(gamma)
cosine_annealing              CosineAnnealingLR(T_max, eta_min)
cosine_warm_restarts          CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)
linear_warmup(s, n, f)        SequentialLR([LinearLR(f, 1.0, n), <s>], milestones=[n])
one_cycle                     OneCycleLR(max_lr, total_steps, ...) (learning rate only)
polynomial_decay              PolynomialLR(total_iters, power) (with end_value=0)
ReduceOnPlateau               ReduceLROnPlateau(mode, factor, patience, threshold, ...)
============================= ==================================================================

Deliberate differences:

- regtune evaluates every schedule in **closed form** from ``t``. StepLR, MultiStepLR,
  ExponentialLR, CosineAnnealingLR and PolynomialLR compute each value from the previous one
  (a "chainable" recursion), which rounds differently: the two agree to about 1e-13 relative
  (the tests use 1e-12 relative plus 1e-15 * init_value absolute, for values that pass through
  zero). CosineAnnealingWarmRestarts, LinearLR, OneCycleLR and ReduceLROnPlateau give the same
  floats as torch.
- ``cosine_annealing`` keeps torch's meaning past ``T_max``: the cosine continues (its period
  is ``2 * T_max``), it is not clamped at ``eta_min`` as optax's ``cosine_decay_schedule`` is.
- ``one_cycle`` holds its final value after ``total_steps - 1``, where torch raises.
- ``linear_warmup`` also accepts ``start_factor=0`` (the first step at learning rate 0); torch's
  LinearLR needs ``start_factor > 0``.
- ``polynomial_decay`` adds ``end_value`` (optax's name); torch's PolynomialLR decays to 0.
"""

from __future__ import annotations

import bisect
import math
import numbers
import operator
from typing import Any, Callable, Sequence, Union

import numpy as np

from ._validation import hyperparameter, nonnegative_int, one_of

__all__ = [
    "Schedule",
    "ReduceOnPlateau",
    "constant",
    "step_decay",
    "multistep",
    "exponential_decay",
    "cosine_annealing",
    "cosine_warm_restarts",
    "linear_warmup",
    "one_cycle",
    "polynomial_decay",
    "get",
    "NAMES",
]

ScalarOrSchedule = Union[float, Callable[[int], float]]


# ----------------------------------------------------------------------------- checks


def _positive_int(value: Any, fn: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn} requires an integer {name}, got {name}={value!r}")
    v = operator.index(value)
    if v <= 0:
        raise ValueError(f"{fn} requires a positive {name}, got {name}={v!r}")
    return v


def _number(value: Any, fn: str, name: str, **bounds: Any) -> float:
    """A finite float in the given bounds; the message names the schedule and quotes the value."""
    try:
        return hyperparameter(value, name, **bounds)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{fn}: {exc}") from None


def _value(value: Any, fn: str, name: str = "init_value") -> float:
    return _number(value, fn, name, low=0.0)


def _count(count: Any) -> int:
    return nonnegative_int(count, "count")


def _metric(metric: Any, name: str = "metric") -> float:
    """A monitored metric: a real number (NaN and inf allowed: a diverged loss is not better
    than any other); a 0-d or one-element real array is read as its value."""
    m = metric
    if isinstance(m, np.ndarray) and m.size == 1 and m.dtype.kind in "fiu":
        m = m.reshape(()).item()
    if isinstance(m, (bool, np.bool_)) or not isinstance(m, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"ReduceOnPlateau: {name} must be a real number, got {name}={metric!r}")
    return float(m)


# ----------------------------------------------------------------------------- the type


class Schedule:
    """A schedule: ``schedule(count) -> float`` for ``count`` >= 0 optimizer steps taken.

    Built by the functions of this module (which check their arguments); the value is computed
    in closed form from ``count`` by ``fn``. ``repr`` shows the arguments. A value that
    overflows float64 (``exponential_decay(1.0, 10.0)(400)``) is a ValueError naming the
    schedule, the count and the arguments, never inf.
    """

    def __init__(self, name: str, fn: Callable[[int], float], **params: Any) -> None:
        self.name = name
        self.params = params
        self._fn = fn

    def __call__(self, count: int) -> float:
        count = _count(count)
        try:
            v = self._fn(count)
        except (OverflowError, ZeroDivisionError):  # e.g. gamma**count past float64, or a huge count
            v = math.inf
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.floating, np.integer)):  # a user's callable
            raise TypeError(f"{self.name}({count}) must be a real number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            args = ", ".join(f"{k}={x!r}" for k, x in self.params.items())
            raise ValueError(f"{self.name} overflows float64 at count={count} ({args})")
        return v

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


def constant(value: float) -> Schedule:
    """``value`` at every step.

    Example:
        >>> constant(0.1)(500)
        0.1
    """
    v = _value(value, "constant", "value")
    return Schedule("constant", lambda t: v, value=v)


def step_decay(init_value: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``init_value * gamma ** (t // step_size)``, as torch's ``StepLR``.

    Args:
        init_value: >= 0. step_size: positive int. gamma: >= 0.

    Example:
        >>> [step_decay(1.0, 2, 0.5)(t) for t in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    v = _value(init_value, "step_decay")
    n = _positive_int(step_size, "step_decay", "step_size")
    g = _number(gamma, "step_decay", "gamma", low=0.0)
    return Schedule("step_decay", lambda t: v * g ** (t // n), init_value=v, step_size=n, gamma=g)


def multistep(init_value: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``init_value * gamma ** (number of milestones <= t)``, as torch's ``MultiStepLR``
    (milestones may be given in any order; a repeated milestone decays twice, as in torch).

    Args:
        init_value: >= 0. milestones: positive ints. gamma: >= 0.

    Example:
        >>> [multistep(1.0, [1, 3], 0.5)(t) for t in range(4)]
        [1.0, 0.5, 0.5, 0.25]
    """
    v = _value(init_value, "multistep")
    try:
        ms = sorted(_positive_int(m, "multistep", f"milestones[{i}]") for i, m in enumerate(milestones))
    except TypeError as exc:
        if "milestones[" in str(exc):
            raise
        raise TypeError(f"multistep requires a sequence of ints, got milestones={milestones!r}") from None
    g = _number(gamma, "multistep", "gamma", low=0.0)
    return Schedule(
        "multistep", lambda t: v * g ** bisect.bisect_right(ms, t), init_value=v, milestones=ms, gamma=g
    )


def exponential_decay(init_value: float, gamma: float) -> Schedule:
    """``init_value * gamma ** t``, as torch's ``ExponentialLR``.

    Args:
        init_value: >= 0. gamma: >= 0 (< 1 decays).

    Example:
        >>> exponential_decay(1.0, 0.5)(3)
        0.125
    """
    v = _value(init_value, "exponential_decay")
    g = _number(gamma, "exponential_decay", "gamma", low=0.0)
    return Schedule("exponential_decay", lambda t: v * g**t, init_value=v, gamma=g)


def _cosine(v: float, eta_min: float, t: float, period: float) -> float:
    return eta_min + (v - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def cosine_annealing(init_value: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """``eta_min + (init_value - eta_min) * (1 + cos(pi * t / T_max)) / 2``, as torch's
    ``CosineAnnealingLR``: ``init_value`` at 0, ``eta_min`` at ``T_max``, and (as torch) the
    cosine continues past ``T_max`` with period ``2 * T_max``.

    Args:
        init_value: >= 0. T_max: positive int, steps from the start to the minimum.
        eta_min: >= 0, the minimum.

    Example:
        >>> s = cosine_annealing(1.0, T_max=10, eta_min=0.1)
        >>> s(0), round(s(5), 6), s(10)
        (1.0, 0.55, 0.1)
    """
    v = _value(init_value, "cosine_annealing")
    T = _positive_int(T_max, "cosine_annealing", "T_max")
    lo = _number(eta_min, "cosine_annealing", "eta_min", low=0.0)
    return Schedule("cosine_annealing", lambda t: _cosine(v, lo, t, T), init_value=v, T_max=T, eta_min=lo)


def cosine_warm_restarts(init_value: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    """SGDR (Loshchilov & Hutter, 2017), as torch's ``CosineAnnealingWarmRestarts``: cosine
    annealing from ``init_value`` to ``eta_min`` over ``T_i`` steps, then a restart;
    ``T_0`` steps in the first cycle, each next one ``T_mult`` times longer::

        value = eta_min + (init_value - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

    with ``T_cur`` the steps since the last restart (found with integer arithmetic).

    Args:
        init_value: >= 0. T_0: positive int. T_mult: int >= 1. eta_min: >= 0.

    Example:
        >>> s = cosine_warm_restarts(1.0, T_0=4, T_mult=2)
        >>> [round(s(t), 3) for t in (0, 2, 4, 8, 12)]
        [1.0, 0.5, 1.0, 0.5, 1.0]
    """
    fn = "cosine_warm_restarts"
    v = _value(init_value, fn)
    T0 = _positive_int(T_0, fn, "T_0")
    Tm = _positive_int(T_mult, fn, "T_mult")
    lo = _number(eta_min, fn, "eta_min", low=0.0)

    def value(t: int) -> float:
        if Tm == 1:
            return _cosine(v, lo, t % T0, T0)
        T_i, T_cur = T0, t
        while T_cur >= T_i:
            T_cur -= T_i
            T_i *= Tm
        return _cosine(v, lo, T_cur, T_i)

    return Schedule(fn, value, init_value=v, T_0=T0, T_mult=Tm, eta_min=lo)


def linear_warmup(schedule: ScalarOrSchedule, warmup_steps: int, start_factor: float = 0.0) -> Schedule:
    """A linear ramp over ``warmup_steps`` steps, then ``schedule`` started afresh::

        t <  warmup_steps:  schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)
        t >= warmup_steps:  schedule(t - warmup_steps)

    as torch's ``SequentialLR([LinearLR(start_factor, 1.0, warmup_steps), after],
    milestones=[warmup_steps])``.

    Args:
        schedule: a float (constant after the warm-up) or a schedule.
        warmup_steps: positive int. start_factor: in [0, 1], the first step's fraction.

    Example:
        >>> s = linear_warmup(0.1, warmup_steps=4)
        >>> [round(s(t), 3) for t in range(6)]
        [0.0, 0.025, 0.05, 0.075, 0.1, 0.1]
    """
    fn = "linear_warmup"
    after = schedule if callable(schedule) else constant(_value(schedule, fn, "schedule"))
    n = _positive_int(warmup_steps, fn, "warmup_steps")
    f = _number(start_factor, fn, "start_factor", low=0.0, high=1.0)
    peak = after(0) if isinstance(after, Schedule) else _value(after(0), fn, "schedule(0)")

    def value(t: int) -> float:
        if t >= n:
            return after(t - n)
        return peak * (f + (1.0 - f) * t / n)  # LinearLR's closed form, term for term

    return Schedule(fn, value, schedule=after, warmup_steps=n, start_factor=f)


def one_cycle(
    max_value: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy (Smith & Topin, 2018), as torch's ``OneCycleLR`` (learning rate only):
    from ``max_value / div_factor`` up to ``max_value`` over the first ``pct_start`` of the
    steps, then down to ``max_value / div_factor / final_div_factor`` at ``total_steps - 1``
    (with ``three_phase``, back to the start value first, as torch). Each phase anneals with
    ``cos`` (``end + (start - end) * (1 + cos(pi * pct)) / 2``) or ``linear``. Steps past
    ``total_steps - 1`` keep the final value (torch raises there).

    Args:
        max_value: >= 0. total_steps: positive int. pct_start: in [0, 1].
        anneal_strategy: "cos" or "linear". div_factor, final_div_factor: > 0.
        three_phase: bool.

    Example:
        >>> s = one_cycle(1.0, total_steps=100)
        >>> round(s(0), 8), s(29), round(s(99), 8)
        (0.04, 1.0, 4e-06)
    """
    fn = "one_cycle"
    top = _value(max_value, fn, "max_value")
    T = _positive_int(total_steps, fn, "total_steps")
    pct = _number(pct_start, fn, "pct_start", low=0.0, high=1.0)
    if not one_of(anneal_strategy, ("cos", "linear")):
        raise ValueError(f"one_cycle requires anneal_strategy 'cos' or 'linear', got anneal_strategy={anneal_strategy!r}")
    div = _number(div_factor, fn, "div_factor", low=0.0, low_open=True)
    final = _number(final_div_factor, fn, "final_div_factor", low=0.0, low_open=True)
    if not isinstance(three_phase, bool):
        raise TypeError(f"one_cycle requires a bool three_phase, got three_phase={three_phase!r}")
    initial = top / div
    if math.isinf(initial):
        raise ValueError(f"one_cycle: max_value / div_factor overflows float64, got max_value={top!r}, div_factor={div!r}")
    low = initial / final
    if three_phase:
        phases = [(pct * T - 1, initial, top), (2 * pct * T - 2, top, initial), (T - 1, initial, low)]
    else:
        phases = [(pct * T - 1, initial, top), (T - 1, top, low)]
    if anneal_strategy == "cos":
        def anneal(start: float, end: float, p: float) -> float:
            return end + (start - end) / 2.0 * (math.cos(math.pi * p) + 1)
    else:
        def anneal(start: float, end: float, p: float) -> float:
            return (end - start) * p + start

    def value(t: int) -> float:
        t = min(t, T - 1)
        start_step = 0.0
        for i, (end_step, a, b) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                span = end_step - start_step
                return anneal(a, b, (t - start_step) / span) if span else b
            start_step = end_step
        raise AssertionError("unreachable")

    return Schedule(
        fn, value, max_value=top, total_steps=T, pct_start=pct, anneal_strategy=anneal_strategy,
        div_factor=div, final_div_factor=final, three_phase=three_phase,
    )  # fmt: skip


def polynomial_decay(init_value: float, total_steps: int, power: float = 1.0, end_value: float = 0.0) -> Schedule:
    """``end_value + (init_value - end_value) * (1 - min(t, total_steps) / total_steps) ** power``,
    as torch's ``PolynomialLR(total_iters=total_steps, power)`` when ``end_value`` is 0.

    Args:
        init_value: >= 0. total_steps: positive int. power: >= 0. end_value: >= 0.

    Example:
        >>> s = polynomial_decay(1.0, total_steps=4, power=2.0)
        >>> [s(t) for t in range(6)]
        [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """
    fn = "polynomial_decay"
    v = _value(init_value, fn)
    T = _positive_int(total_steps, fn, "total_steps")
    p = _number(power, fn, "power", low=0.0)
    end = _number(end_value, fn, "end_value", low=0.0)
    return Schedule(
        fn, lambda t: end + (v - end) * (1.0 - min(t, T) / T) ** p,
        init_value=v, total_steps=T, power=p, end_value=end,
    )  # fmt: skip


class ReduceOnPlateau:
    """Divide the value by ``1 / factor`` when a monitored metric stops improving, as torch's
    ``ReduceLROnPlateau``. Stateful: call :meth:`step` with the metric (e.g. the validation
    loss once per epoch); calling the object returns the current value whatever the count, so
    it plugs into an optimizer's ``lr=`` like any schedule.

    A metric is better than the best so far when (mode "min", threshold_mode "rel")
    ``metric < best * (1 - threshold)`` ("abs": ``metric < best - threshold``; mode "max"
    mirrored). After more than ``patience`` epochs without improvement the value becomes
    ``max(value * factor, min_value)`` (unchanged when that moves it by ``eps`` or less), and
    ``cooldown`` epochs pass before bad epochs count again.

    Args:
        init_value: >= 0. mode: "min" or "max". factor: in [0, 1). patience: int >= 0.
        threshold: >= 0. threshold_mode: "rel" or "abs". cooldown: int >= 0.
        min_value: >= 0. eps: >= 0.

    Example:
        >>> s = ReduceOnPlateau(0.1, patience=1)
        >>> [s.step(loss) for loss in (1.0, 0.9, 0.95, 0.95)]
        [0.1, 0.1, 0.1, 0.010000000000000002]
        >>> s(0)
        0.010000000000000002
    """

    def __init__(
        self,
        init_value: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_value: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        fn = "ReduceOnPlateau"
        self.value = _value(init_value, fn)
        if not one_of(mode, ("min", "max")):
            raise ValueError(f"{fn} requires mode 'min' or 'max', got mode={mode!r}")
        if not one_of(threshold_mode, ("rel", "abs")):
            raise ValueError(f"{fn} requires threshold_mode 'rel' or 'abs', got threshold_mode={threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _number(factor, fn, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = nonnegative_int(patience, "patience")
        self.threshold = _number(threshold, fn, "threshold", low=0.0)
        self.cooldown = nonnegative_int(cooldown, "cooldown")
        self.min_value = _number(min_value, fn, "min_value", low=0.0)
        self.eps = _number(eps, fn, "eps", low=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, a: float) -> bool:
        if self.mode == "min":
            bound = self.best * (1.0 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return a < bound
        bound = self.best * (self.threshold + 1.0) if self.threshold_mode == "rel" else self.best + self.threshold
        return a > bound

    def step(self, metric: float) -> float:
        """Record one epoch's metric; returns the (possibly reduced) value."""
        current = _metric(metric)
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new = max(self.value * self.factor, self.min_value)
            if self.value - new > self.eps:
                self.value = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.value

    def __call__(self, count: int = 0) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """The mutable state (value, best, counters), for checkpoints."""
        return {k: getattr(self, k) for k in ("value", "best", "num_bad_epochs", "cooldown_counter")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: a dict with exactly its four keys, checked as the
        constructor checks its arguments (a float count is a TypeError, not truncated)."""
        keys = ("value", "best", "num_bad_epochs", "cooldown_counter")
        if not isinstance(state, dict) or set(state) != set(keys):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a dict with keys {list(keys)}, as state_dict() returns, got {got}")
        value = _value(state["value"], "ReduceOnPlateau", "state['value']")
        best = _metric(state["best"], "state['best']")
        bad = nonnegative_int(state["num_bad_epochs"], "state['num_bad_epochs']")
        cool = nonnegative_int(state["cooldown_counter"], "state['cooldown_counter']")
        self.value, self.best, self.num_bad_epochs, self.cooldown_counter = value, best, bad, cool

    def __repr__(self) -> str:
        return f"ReduceOnPlateau(value={self.value!r}, mode={self.mode!r}, factor={self.factor!r}, patience={self.patience})"


# ----------------------------------------------------------------------------- by name

#: Schedule names the trainer and the command line accept, and how each is built from a peak
#: value and a total number of steps (the remaining arguments keep their defaults).
NAMES = ("constant", "step", "multistep", "exponential", "cosine", "warm_restarts", "one_cycle", "polynomial",
         "plateau")  # fmt: skip


def get(name: str, value: float, total_steps: int, **kwargs: Any) -> Any:
    """Build a schedule by name for a run of ``total_steps`` optimizer steps peaking at ``value``.

    ======================= ====================================================================
    name                    schedule
    ======================= ====================================================================
    ``constant``            :func:`constant`
    ``step``                :func:`step_decay`, ``step_size = total_steps // 3``, gamma 0.1
    ``multistep``           :func:`multistep`, milestones at 50% and 75%, gamma 0.1
    ``exponential``         :func:`exponential_decay`, down to 1% at the end
    ``cosine``              :func:`cosine_annealing`, ``T_max = total_steps``
    ``warm_restarts``       :func:`cosine_warm_restarts`, ``T_0 = total_steps // 7``, T_mult 2
    ``one_cycle``           :func:`one_cycle`
    ``polynomial``          :func:`polynomial_decay`, power 1 (linear decay)
    ``plateau``             :class:`ReduceOnPlateau`, factor 0.5, patience 3 (stepped per epoch)
    ======================= ====================================================================

    ``kwargs`` override the arguments the table sets.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), or a bad argument.
        TypeError: a name that is not a str, a ``total_steps`` that is not an int.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(NAMES)}; got name={name!r}")
    T = max(nonnegative_int(total_steps, "total_steps"), 1)  # an empty run still gets a schedule
    builders: dict[str, Callable[[], Any]] = {
        "constant": lambda: constant(value, **kwargs),
        "step": lambda: step_decay(value, **{"step_size": max(T // 3, 1), **kwargs}),
        "multistep": lambda: multistep(value, **{"milestones": [max(T // 2, 1), max(3 * T // 4, 1)], **kwargs}),
        "exponential": lambda: exponential_decay(value, **{"gamma": 0.01 ** (1.0 / T), **kwargs}),
        "cosine": lambda: cosine_annealing(value, **{"T_max": T, **kwargs}),
        "warm_restarts": lambda: cosine_warm_restarts(value, **{"T_0": max(T // 7, 1), "T_mult": 2, **kwargs}),
        "one_cycle": lambda: one_cycle(value, **{"total_steps": T, **kwargs}),
        "polynomial": lambda: polynomial_decay(value, **{"total_steps": T, **kwargs}),
        "plateau": lambda: ReduceOnPlateau(value, **{"factor": 0.5, "patience": 3, **kwargs}),
    }
    if name not in builders:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(NAMES)}")
    return builders[name]()

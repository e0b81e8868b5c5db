"""Tests for regtune.dask: chunked results equal the one-machine results bit for bit.

Every sampler, initializer, dropout and optimizer step runs over one table of chunkings
(whole, row blocks with an uneven tail, column blocks that are not contiguous in the whole
array, mixed uneven blocks) in float32 and float64, on dask's threaded scheduler, and is
compared with ``np.array_equal`` to regtune's one-machine result. One test runs on a
``dask.distributed.LocalCluster`` of two worker processes on the loopback interface.
"""

from __future__ import annotations

import inspect
import itertools
import math

import ml_dtypes
import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import regtune  # noqa: E402
import regtune.dask as rdask  # noqa: E402
import regtune.init as init  # noqa: E402
from regtune.dask._blocks import block_runs  # noqa: E402
from regtune.dask.optim import REDUCE_BLOCK  # noqa: E402

DTYPES = [np.float32, np.float64]
SHAPE = (97, 130)  # 12610 elements: 3 reduce blocks and a partial one
CHUNKS = {
    "whole": SHAPE,
    "rows": (16, 130),  # contiguous runs, last chunk uneven
    "columns": (97, 33),  # one run per row
    "blocks": (20, 33),
    "uneven": ((50, 1, 46), (7, 100, 23)),
    "auto": "auto",
}
CONV_SHAPE = (8, 6, 5, 5)
CONV_CHUNKS = {
    "whole": CONV_SHAPE,
    "inner": (3, 4, 2, 5),  # runs along the last two axes
    "last-axis": (8, 6, 5, 2),
    "one-filter": (1, 6, 5, 5),
}


@pytest.fixture(autouse=True)
def _threaded():
    with dask.config.set(scheduler="threads"):
        yield


def _all_chunkings(shape):
    return CONV_CHUNKS if shape == CONV_SHAPE else CHUNKS


# ------------------------------------------------------------------------------- runs


@pytest.mark.parametrize("shape", [(7,), (6, 5), (4, 3, 5), (3, 2, 4, 3), (2, 0, 3)])
def test_block_runs_cover_each_block_in_order(shape):
    """block_runs names exactly the flat indices of the block, in the block's C order."""
    index = np.arange(math.prod(shape)).reshape(shape)
    per_axis = [[(s, e) for s in range(d + 1) for e in range(s, d + 1)][:: max(1, d - 1)] for d in shape]
    for box in itertools.product(*per_axis):
        starts = [s for s, _ in box]
        bshape = [e - s for s, e in box]
        run_len, firsts = block_runs(shape, starts, bshape)
        got = (firsts[:, None] + np.arange(run_len)).reshape(-1) if firsts.size else np.empty(0, np.int64)
        want = index[tuple(slice(s, e) for s, e in box)].reshape(-1)
        assert np.array_equal(got, want), (shape, box)


def test_runs_are_maximal():
    assert block_runs((100, 30), (10, 0), (50, 30))[1].size == 1  # whole rows: one run
    assert block_runs((100, 30), (10, 5), (50, 10))[1].size == 50  # a column block: a run per row
    assert block_runs((4, 6, 30), (1, 0, 0), (2, 6, 30))[1].size == 1


# ------------------------------------------------------------------------------- samplers

SAMPLERS = [
    ("uniform", dict(low=-0.5, high=2.0)),
    ("normal", dict(mean=1.0, std=0.02)),
    ("truncated_normal", dict(mean=0.0, std=1.0, a=-1.5, b=2.5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", CHUNKS.values(), ids=CHUNKS.keys())
@pytest.mark.parametrize("name, kw", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_samplers_equal_one_machine(name, kw, chunks, dtype):
    x = getattr(rdask.random, name)(SHAPE, **kw, dtype=dtype, seed=11, offset=5, chunks=chunks)
    want = getattr(regtune.random, name)(SHAPE, **kw, dtype=dtype, seed=11, offset=5)
    assert x.dtype == want.dtype and x.shape == want.shape
    got = x.compute()
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


@pytest.mark.parametrize("chunks", CONV_CHUNKS.values(), ids=CONV_CHUNKS.keys())
def test_samplers_equal_one_machine_in_4d(chunks):
    for dtype in DTYPES:
        got = rdask.random.normal(CONV_SHAPE, dtype=dtype, seed=3, chunks=chunks).compute()
        assert np.array_equal(got, regtune.random.normal(CONV_SHAPE, dtype=dtype, seed=3))


def test_a_slice_computes_only_its_chunks_and_equals_the_slice():
    x = rdask.random.normal((4000, 300), seed=2, chunks=(1000, 100))
    part = x[1500:1502, 150:260]
    culled = part.__dask_graph__().cull(set(dask.core.flatten(part.__dask_keys__())))
    made = [k for k in dict(culled) if isinstance(k, tuple) and k[0] == x.name]
    assert sorted(made) == [(x.name, 1, 1), (x.name, 1, 2)]  # only the chunks the slice needs
    want = regtune.random.normal(300 * 2, seed=2, offset=1500 * 300).reshape(2, 300)[:, 150:260]
    assert np.array_equal(part.compute(), want)


def test_seeds_generators_and_recomputation():
    ss = np.random.SeedSequence(1234)
    assert np.array_equal(
        rdask.random.uniform(SHAPE, seed=ss, chunks=(30, 40)).compute(), regtune.random.uniform(SHAPE, seed=ss)
    )
    # a Generator (root and spawned child) advances exactly as the one-machine call moves it
    for make in (lambda: regtune.Generator(9), lambda: regtune.Generator(9).spawn(2)[1]):
        g1, g2 = make(), make()
        for dtype in DTYPES:
            got = rdask.random.normal(SHAPE, dtype=dtype, seed=g1, chunks=(40, 33)).compute()
            assert np.array_equal(got, regtune.random.normal(SHAPE, dtype=dtype, seed=g2))
        assert g1.state == g2.state
    # seed=None: the key is drawn once, when the array is made; recomputing gives the same values
    x = rdask.random.normal(SHAPE, chunks=(50, 50))
    assert np.array_equal(x.compute(), x.compute())
    # the same arguments make the same graph (deterministic names)
    assert rdask.random.normal(SHAPE, seed=1, chunks=10).name == rdask.random.normal(SHAPE, seed=1, chunks=10).name
    assert rdask.random.normal(SHAPE, seed=1, chunks=10).name != rdask.random.normal(SHAPE, seed=2, chunks=10).name


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rdask.random.uniform(SHAPE, 1.0, 1.0), ValueError, "low must be < high"),
        (lambda: rdask.random.normal(SHAPE, std=0.0), ValueError, "std must be > 0"),
        (lambda: rdask.random.truncated_normal(SHAPE, a=1.0, b=0.0), ValueError, "a must be < b"),
        (lambda: rdask.random.normal(SHAPE, dtype=np.int32), TypeError, "dtype must be float32, float64, bfloat16 or float16"),
        (lambda: rdask.random.normal(SHAPE, seed=-1), ValueError, "seed must be in"),
        (lambda: rdask.random.normal(SHAPE, seed=1.5), TypeError, "seed must be"),
        (lambda: rdask.random.normal(SHAPE, offset=-1), ValueError, "offset must be >= 0"),
        (lambda: rdask.random.normal(SHAPE, offset=2**64 - 10), ValueError, "runs past the end"),
        (lambda: rdask.random.normal((3, -1)), ValueError, "negative"),
    ],
)
def test_bad_arguments_raise_when_the_array_is_made(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_a_bad_chunks_does_not_advance_a_generator():
    g = regtune.Generator(1)
    with pytest.raises(ValueError):
        rdask.random.normal(SHAPE, seed=g, chunks=(1, 2, 3))
    assert g.state["block"] == 0


# ------------------------------------------------------------------------------- initializers

INITS = [
    ("uniform", dict(a=-0.3, b=0.7)),
    ("normal", dict(mean=0.5, std=0.1)),
    ("trunc_normal", dict(std=0.02, a=-0.04, b=0.03)),
    ("constant", dict(val=0.25)),
    ("zeros", {}),
    ("ones", {}),
    ("xavier_uniform", dict(gain=init.calculate_gain("tanh"))),
    ("xavier_normal", {}),
    ("kaiming_uniform", dict(a=0.2)),
    ("kaiming_normal", dict(mode="fan_out", nonlinearity="relu")),
    ("lecun_uniform", {}),
    ("lecun_normal", {}),
    ("variance_scaling", dict(scale=2.0, mode="fan_avg", distribution="truncated_normal")),
    ("variance_scaling", dict(scale=0.5, mode="fan_out", distribution="normal")),
    ("variance_scaling", dict(distribution="uniform")),
    ("orthogonal", dict(gain=2.0)),
    ("glorot_uniform", {}),
    ("glorot_normal", {}),
    ("he_uniform", dict(nonlinearity="relu")),
    ("he_normal", {}),
]
_SEEDLESS = {"constant", "zeros", "ones"}


def _init_id(case):
    name, kw = case
    return "-".join([name, *(f"{k}={v}" for k, v in kw.items())])


def test_every_initializer_is_there_with_the_same_arguments():
    assert rdask.init.__all__ == init.__all__
    for name in init.__all__:
        one, many = getattr(init, name), getattr(rdask.init, name)
        if name.startswith("calculate_"):
            assert one is many
            continue
        want = [p for p in inspect.signature(one).parameters if p != "out"] + ["chunks"]
        assert list(inspect.signature(many).parameters) == want, name
    assert {c[0] for c in INITS} | {"calculate_gain", "calculate_fans"} == set(init.__all__)


@pytest.mark.parametrize("module,case", [("random", c) for c in SAMPLERS] + [("init", c) for c in INITS],
                         ids=lambda c: c if isinstance(c, str) else c[0])
def test_default_dtype_is_float32(module, case):
    # The dask layer has no out=, so its dtype is float32 unless asked: by default and for
    # dtype=None, as in the one-machine functions without out=.
    name, kw = case
    fn = getattr(getattr(rdask, module), name)
    seed = {} if name in _SEEDLESS else {"seed": 1}
    assert fn(CONV_SHAPE, **kw, **seed).dtype == np.float32
    assert fn(CONV_SHAPE, **kw, **seed, dtype=None).dtype == np.float32
    assert fn(CONV_SHAPE, **kw, **seed, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [SHAPE, CONV_SHAPE], ids=["2d", "4d"])
@pytest.mark.parametrize("case", INITS, ids=_init_id)
def test_initializers_equal_one_machine(case, shape, dtype):
    name, kw = case
    seeded = {} if name in _SEEDLESS else dict(seed=21, offset=7)
    want = getattr(init, name)(shape, **kw, dtype=dtype, **seeded)
    for chunks in _all_chunkings(shape).values():
        x = getattr(rdask.init, name)(shape, **kw, dtype=dtype, chunks=chunks, **seeded)
        assert x.dtype == want.dtype and x.shape == want.shape
        assert np.array_equal(x.compute(), want), chunks


def test_fans_come_from_the_whole_shape():
    x = rdask.init.kaiming_uniform((4096, 64), nonlinearity="relu", seed=0, chunks=(64, 8))
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 64)
    assert 0.99 * bound < float(abs(x).max().compute()) < bound


def test_orthogonal_with_a_generator_recomputes_the_same_matrix():
    g1, g2 = regtune.Generator(4).spawn(1)[0], regtune.Generator(4).spawn(1)[0]
    q = rdask.init.orthogonal((40, 60), seed=g1, chunks=(16, 16))
    want = init.orthogonal((40, 60), seed=g2)
    assert np.array_equal(q.compute(), want) and np.array_equal(q.compute(), want)
    assert g1.state == g2.state
    assert q.chunksize == (16, 16)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rdask.init.xavier_uniform(10), ValueError, "fewer than 2 dimensions"),
        (lambda: rdask.init.kaiming_normal(SHAPE, mode="fan_avg"), ValueError, "mode must be one of"),
        (lambda: rdask.init.kaiming_normal(SHAPE, nonlinearity="swish"), ValueError, "Unsupported nonlinearity"),
        (lambda: rdask.init.variance_scaling(SHAPE, distribution="cauchy"), ValueError, "distribution must be"),
        (lambda: rdask.init.uniform(SHAPE, 1.0, 0.0), ValueError, "a (must be )?< b"),
        (lambda: rdask.init.constant(SHAPE), TypeError, "val"),
        (lambda: rdask.init.constant(SHAPE, float("nan")), ValueError, "val must be finite"),
        (lambda: rdask.init.orthogonal(5), ValueError, "2 or more dimensions"),
        (lambda: rdask.init.xavier_normal(SHAPE, gain=0.0), ValueError, "gain must be > 0"),
    ],
)
def test_initializer_errors_match_one_machine(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_zero_element_shapes():
    for name in ("kaiming_normal", "orthogonal", "xavier_uniform"):
        x = getattr(rdask.init, name)((0, 5), seed=0)
        assert x.compute().shape == (0, 5)


# ------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])
def test_dropout_and_its_backward_equal_one_machine(p, dtype):
    x_np = regtune.random.normal(SHAPE, dtype=dtype, seed=1)
    dy_np = regtune.random.normal(SHAPE, dtype=dtype, seed=2)
    want_y = regtune.dropout(x_np, p, seed=8, offset=33, return_mask=False)
    want_dx = regtune.dropout_backward(dy_np, p=p, seed=8, offset=33)
    for chunks in CHUNKS.values():
        x = da.from_array(x_np, chunks=chunks)
        y = rdask.dropout(x, p, seed=8, offset=33)
        assert y.chunks == x.chunks
        assert np.array_equal(y.compute(), want_y)
        # the backward regenerates the mask per chunk, also under another chunking
        dy = da.from_array(dy_np, chunks=(31, 130))
        assert np.array_equal(rdask.dropout_backward(dy, p, seed=8, offset=33).compute(), want_dx)


def test_dropout_identity_and_errors():
    x = da.ones(SHAPE, chunks=50)
    assert rdask.dropout(x, 0.0, seed=1) is x
    assert rdask.dropout(x, 0.5, seed=1, training=False) is x
    assert rdask.dropout_backward(x, 0.0, seed=1) is x
    with pytest.raises(ValueError, match="explicit seed"):
        rdask.dropout(x, 0.5, seed=None)
    with pytest.raises(TypeError, match="Generator"):
        rdask.dropout(x, 0.5, seed=regtune.Generator(1))
    with pytest.raises(ValueError, match="p must be in"):
        rdask.dropout(x, 1.5, seed=1)
    with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
        rdask.dropout(da.ones(4, dtype=np.int64, chunks=2), 0.5, seed=1)
    with pytest.raises(TypeError, match="seed"):
        rdask.dropout(x, 0.5)  # seed is required


# ------------------------------------------------------------------------------- optimizers

OPT_CASES = [
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, amsgrad=True, l1=1e-3)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1, max_grad_norm=5.0)),
    ("adamw", dict(lr=lambda t: 1e-2 / (t + 1), prox_l1=0.05, max_grad_norm=1e6)),  # no clipping
    ("rmsprop", dict(lr=1e-3, momentum=0.5, centered=True, max_grad_norm=0.5)),
    ("adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, max_grad_norm=2.0)),
    ("lion", dict(lr=1e-3, weight_decay=1e-4, decoupled_weight_decay=True, max_grad_norm=2.0)),
    ("nadam", dict(lr=2e-3, weight_decay=0.1, decoupled_weight_decay=True, max_grad_norm=2.0)),
    ("radam", dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.05, l1=1e-3)),
    ("adamax", dict(lr=2e-3, weight_decay=0.05, prox_l1=0.05)),
    ("adadelta", dict(lr=1.0, rho=0.5, max_grad_norm=2.0)),
]
PARAM_SHAPES = [SHAPE, (10_000,), CONV_SHAPE]
PARAM_CHUNKS = [(20, 33), (3000,), (3, 4, 2, 5)]
GRAD_CHUNKS = [(97, 7), (4096 + 5,), CONV_SHAPE]  # differ from the params': rechunked


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", OPT_CASES, ids=lambda c: c[0] + "-" + "-".join(sorted(c[1])))
def test_optimizer_steps_equal_one_machine(case, dtype):
    kind, kw = case
    params_np = [regtune.random.normal(s, dtype=dtype, seed=i) for i, s in enumerate(PARAM_SHAPES)]
    opt = regtune.dask.optim.OPTIMIZERS[kind]([p.copy() for p in params_np], **kw)
    params = [da.from_array(p, chunks=c) for p, c in zip(params_np, PARAM_CHUNKS)]
    state = None
    for t in range(3):
        grads_np = [regtune.random.normal(s, std=3.0, dtype=dtype, seed=100 + 10 * t + i) for i, s in enumerate(PARAM_SHAPES)]
        grads = [da.from_array(g, chunks=c) for g, c in zip(grads_np, GRAD_CHUNKS)]
        res = rdask.optim.step(kind, params, grads, state, step_count=t, **kw)
        want_norm = opt.step(grads_np)
        params, state, norm = dask.compute(res.params, res.state, res.norm)
        for got, want in zip(params, opt.params):
            assert got.dtype == want.dtype and np.array_equal(got, want)
        assert set(state) == set(opt.state)
        for name in state:
            for got, want in zip(state[name], opt.state[name]):
                assert np.array_equal(got, want), name
        if "max_grad_norm" in kw:
            assert float(norm) == want_norm  # bit-identical, not merely close
        else:
            assert norm is None and want_norm is None
        # feed the computed values back as dask arrays with the params' chunks
        params = [da.from_array(p, chunks=c) for p, c in zip(params, PARAM_CHUNKS)]
        state = {n: [da.from_array(a, chunks=c) for a, c in zip(v, PARAM_CHUNKS)] for n, v in state.items()}


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_is_the_one_machine_norm_for_any_chunking(dtype):
    gs = [regtune.random.normal(s, dtype=dtype, seed=i) for i, s in enumerate([(333, 77), (5,), (2 * REDUCE_BLOCK + 1,)])]
    want = regtune.optim.clip_grad_norm([g.copy() for g in gs], 1e30)
    for chunks in [((333, 77), (5,), (8193,)), ((10, 7), (1,), (4096,)), ((1, 77), (2,), (100,)), ("auto",) * 3]:
        got = rdask.optim.grad_norm([da.from_array(g, chunks=c) for g, c in zip(gs, chunks)])
        assert float(got.compute()) == want


def test_step_errors_are_named():
    p = [da.zeros(SHAPE, chunks=50)]
    g = [da.ones(SHAPE, chunks=50)]
    with pytest.raises(ValueError, match="opt_kind must be one of"):
        rdask.optim.step("lamb", p, g, lr=0.1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        rdask.optim.step("sgd", p, g, lr=0.1, betas=(0.9, 0.9))
    with pytest.raises(ValueError, match="lr must be in"):
        rdask.optim.step("sgd", p, g, lr=-1.0)
    with pytest.raises(ValueError, match="grads has 2 arrays but params has 1"):
        rdask.optim.step("sgd", p, g * 2, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\] has shape"):
        rdask.optim.step("sgd", p, [da.ones((3, 3))], lr=0.1)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float32"):
        rdask.optim.step("sgd", p, [da.ones(SHAPE, dtype=np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="state must hold the buffers"):
        rdask.optim.step("adam", p, g, {"exp_avg": p}, lr=0.1)
    with pytest.raises(ValueError, match="step_count must be >= 0"):
        rdask.optim.step("adam", p, g, step_count=-1)


def test_step_accepts_an_optimizer_class_and_leaves_inputs_alone():
    w = np.ones((300, 40))
    p = da.from_array(w, chunks=(100, 40))
    res = rdask.optim.step(regtune.optim.SGD, [p], [da.ones_like(p)], lr=0.5)
    assert np.array_equal(res.params[0].compute(), np.full_like(w, 0.5))
    assert np.array_equal(p.compute(), w) and np.array_equal(w, np.ones((300, 40)))


# ------------------------------------------------------------------------------- cluster

def test_on_a_local_cluster_of_processes():
    """Two worker processes on loopback: chunks made and stepped in other processes equal the
    one-machine results."""
    distributed = pytest.importorskip("distributed")
    shape = (600, 500)
    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        w = rdask.init.kaiming_normal(shape, nonlinearity="relu", seed=3, chunks=(128, 200))
        g = rdask.random.normal(shape, seed=4, chunks=(64, 500))
        y = rdask.dropout(w, 0.3, seed=5)
        res = rdask.optim.step("adamw", [w], [g], lr=1e-2, max_grad_norm=1.0)
        got_w, got_y, got_p, got_norm = client.compute([w, y, res.params[0], res.norm], sync=True)
        assert len(client.scheduler_info()["workers"]) == 2
    want_w = init.kaiming_normal(shape, nonlinearity="relu", seed=3)
    assert np.array_equal(got_w, want_w)
    assert np.array_equal(got_y, regtune.dropout(want_w, 0.3, seed=5, return_mask=False))
    opt = regtune.optim.AdamW([want_w.copy()], lr=1e-2, max_grad_norm=1.0)
    want_norm = opt.step([regtune.random.normal(shape, seed=4)])
    assert float(got_norm) == want_norm
    assert np.array_equal(got_p, opt.params[0])


# ------------------------------------------------------------------- hostile input (issue 16)
SMALL = (6, 4)
_BAD_CHUNKS = [
    (0, ValueError, r"chunks must hold block sizes > 0 \(or -1 for a whole axis\), got 0 in chunks=0"),
    (-2, ValueError, "chunks must hold block sizes > 0"),
    ((0, 2), ValueError, r"got 0 in chunks=\(0, 2\)"),
    ((2, -3), ValueError, r"got -3 in chunks=\(2, -3\)"),
    (2.5, TypeError, "chunks must hold ints, got 2.5"),
    (2.0, TypeError, "chunks must hold ints, got 2.0"),
    ((2, 2.0), TypeError, "chunks must hold ints, got 2.0"),
    (np.float64(3.0), TypeError, "chunks must hold ints"),
    (True, TypeError, "chunks must hold ints, got True"),
    (math.nan, ValueError, r"chunks must not hold NaN \(unknown chunk sizes\)"),
    (((math.nan, 6), (4,)), ValueError, "chunks must not hold NaN"),
    (((6.0,), (4,)), TypeError, "chunks must hold ints, got 6.0"),
    (((-1, 7), (4,)), ValueError, "chunks must hold chunk sizes >= 0, got -1"),
    (((3, 2), (4,)), ValueError, r"chunks=\(\(3, 2\), \(4,\)\) does not fit shape \(6, 4\): Chunks do not add up"),
    ((2,), ValueError, r"chunks=\(2,\) does not fit shape \(6, 4\)"),
    ((2, 2, 2), ValueError, r"chunks=\(2, 2, 2\) does not fit shape \(6, 4\)"),
    (None, TypeError, "chunks must be 'auto', an int, or a tuple"),
    (np.array([2, 2]), TypeError, "chunks must hold ints"),
    ({5: 2}, ValueError, r"chunks names axis 5, but shape \(6, 4\) has 2 dimensions"),
    ({"rows": 2}, TypeError, "chunks keys must be int axes"),
    ({0: 0}, ValueError, "chunks must hold block sizes > 0"),
    ("lots", ValueError, r"chunks='lots' does not fit shape"),
    (object(), TypeError, "chunks must hold ints"),
]
_MAKERS = {
    "random.normal": lambda c: rdask.random.normal(SMALL, seed=1, chunks=c),
    "random.uniform": lambda c: rdask.random.uniform(SMALL, seed=1, chunks=c),
    "init.xavier_uniform": lambda c: rdask.init.xavier_uniform(SMALL, seed=1, chunks=c),
    "init.constant": lambda c: rdask.init.constant(SMALL, 0.5, chunks=c),
    "init.orthogonal": lambda c: rdask.init.orthogonal(SMALL, seed=1, chunks=c),
}


@pytest.mark.parametrize("maker", _MAKERS)
@pytest.mark.parametrize("chunks, exc, match", _BAD_CHUNKS, ids=lambda v: repr(v)[:20])
def test_hostile_chunks_are_named(maker, chunks, exc, match):
    with pytest.raises(exc, match=match):
        _MAKERS[maker](chunks)


@pytest.mark.parametrize("chunks", [-1, (None, 2), (-1, 3), {0: 2}, "64B", ((6,), (1, 3)), (np.int64(3), 2)], ids=repr)
def test_chunks_dask_accepts_still_work(chunks):
    x = rdask.random.normal(SMALL, seed=1, chunks=chunks)
    assert np.array_equal(x.compute(), regtune.random.normal(SMALL, seed=1))


def test_a_bad_chunks_leaves_a_generator_where_it_was():
    g = regtune.Generator(5)
    before = g.state
    for bad in (0, math.nan, 2.5):
        with pytest.raises((TypeError, ValueError), match="chunks"):
            rdask.random.normal(SMALL, seed=g, chunks=bad)
    assert g.state == before


def _unknown_chunks():
    x = da.arange(10, chunks=5).astype(np.float64)
    return x[x > 3]  # chunk sizes known only once computed


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rdask.dropout(_unknown_chunks(), 0.5, seed=1), ValueError, "x has unknown chunk sizes"),
        (lambda: rdask.dropout_backward(_unknown_chunks(), 0.5, seed=1), ValueError, "dy has unknown chunk sizes"),
        (lambda: rdask.dropout(np.ma.masked_array(np.ones(4)), 0.5, seed=1), TypeError, "x must be a plain numpy.ndarray, got a numpy.ma"),
        (lambda: rdask.dropout(da.from_array(np.ma.masked_array(np.ones(4), mask=[0, 1, 0, 0]), chunks=2), 0.5,
                               seed=1), TypeError, "x must not be a masked dask array"),
        (lambda: rdask.dropout(None, 0.5, seed=1), TypeError, "x must be a dask or NumPy array, got None"),
        (lambda: rdask.dropout(da.ones(4, dtype=complex, chunks=2), 0.5, seed=1), TypeError, "x must have dtype"),
        (lambda: rdask.dropout(da.ones(4, chunks=2), math.nan, seed=1), ValueError, "p must be finite"),
        (lambda: rdask.dropout(da.ones(4, chunks=2), 0.5, seed=1, training=1), TypeError, "training must be a bool"),
        (lambda: rdask.dropout_backward(np.ma.masked_array(np.ones(4)), 0.5, seed=1), TypeError, "dy must be a plain numpy.ndarray"),
        (lambda: rdask.optim.step("sgd", [_unknown_chunks()], [_unknown_chunks()], lr=0.1), ValueError,
         r"params\[0\] has unknown chunk sizes"),
        (lambda: rdask.optim.step("sgd", [da.zeros(4, chunks=2)], [np.ma.masked_array(np.ones(4))], lr=0.1),
         TypeError, r"grads\[0\] must be a plain numpy.ndarray, got a numpy.ma"),
        (lambda: rdask.optim.step("sgd", [da.zeros(4, chunks=2)], [None], lr=0.1), TypeError, r"grads\[0\] must be"),
        (lambda: rdask.optim.step("adam", [da.zeros(4, chunks=2)], [da.ones(4, chunks=2)],
                                  {"exp_avg": [_unknown_chunks()], "exp_avg_sq": [da.zeros(4, chunks=2)]}, lr=0.1),
         ValueError, r"state\['exp_avg'\]\[0\] has unknown chunk sizes"),
        (lambda: rdask.optim.step("adam", [da.zeros(4, chunks=2)], [da.ones(4, chunks=2)], step_count=2**63),
         ValueError, "step_count must be < 9223372036854775808"),
        (lambda: rdask.optim.step("adam", [da.zeros(4, chunks=2)], [da.ones(4, chunks=2)], step_count=1.0),
         TypeError, "step_count must be an int"),
        (lambda: rdask.optim.step("adam", [da.zeros(4, chunks=2)], [da.ones(4, chunks=2)], lr=1e308),
         ValueError, r"lr / \(1 - betas\[0\]\*\*t\) overflows"),
        (lambda: rdask.optim.step("adam", [da.zeros(4, chunks=2)], [da.ones(4, chunks=2)], eps=0.0),
         ValueError, r"eps must be in \(0, inf\)"),
        (lambda: rdask.optim.grad_norm([_unknown_chunks()]), ValueError, r"grads\[0\] has unknown chunk sizes"),
        (lambda: rdask.optim.grad_norm(None), TypeError, "grads must be a list"),
    ],
)  # fmt: skip
def test_hostile_dask_arrays_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16], ids=["bf16", "f16"])
def test_16bit_chunks_equal_the_one_machine_arrays(dtype):
    chunks = (31, 47)
    for name, args in [("uniform", (-2.0, 3.0)), ("normal", (0.5, 2.0)), ("truncated_normal", ())]:
        got = getattr(rdask.random, name)(SHAPE, *args, dtype=dtype, seed=4, offset=3, chunks=chunks).compute()
        want = getattr(regtune.random, name)(SHAPE, *args, dtype=dtype, seed=4, offset=3)
        assert got.dtype == np.dtype(dtype) and np.array_equal(got.view(np.uint16), want.view(np.uint16)), name
    w = rdask.init.kaiming_uniform(SHAPE, dtype=dtype, seed=4, chunks=chunks).compute()
    assert np.array_equal(w.view(np.uint16), init.kaiming_uniform(SHAPE, dtype=dtype, seed=4).view(np.uint16))
    c = rdask.init.constant(SHAPE, 0.1, dtype=dtype, chunks=chunks).compute()
    assert np.array_equal(c.view(np.uint16), init.constant(SHAPE, 0.1, dtype=dtype).view(np.uint16))
    x = regtune.random.normal(SHAPE, dtype=dtype, seed=1)
    y = rdask.dropout(da.from_array(x, chunks=chunks), 0.3, seed=9, offset=2).compute()
    assert np.array_equal(y.view(np.uint16), regtune.dropout(x, 0.3, seed=9, offset=2, return_mask=False).view(np.uint16))
    dx = rdask.dropout_backward(da.from_array(x, chunks=chunks), 0.3, seed=9, offset=2).compute()
    assert np.array_equal(dx.view(np.uint16), y.view(np.uint16))

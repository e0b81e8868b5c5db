"""regtune.torch.init: torch.nn.init names on tensors, and reset_parameters / materialize of whole
models keyed by parameter name (torch optional)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("regtune.torch")

import regtune  # noqa: E402


def test_init_functions_fill_tensors_in_place_with_regtunes_values():
    t = torch.empty(30, 20)
    out = rt.init.kaiming_normal_(t, nonlinearity="relu", seed=3)
    assert out is t and np.array_equal(t.numpy(), regtune.init.kaiming_normal((30, 20), nonlinearity="relu", seed=3))
    p = torch.nn.Parameter(torch.empty(5, 4))
    rt.init.xavier_uniform_(p, gain=2.0, seed=1)
    assert np.array_equal(p.detach().numpy(), regtune.init.xavier_uniform((5, 4), gain=2.0, seed=1))
    assert torch.equal(rt.init.ones_(torch.empty(3)), torch.ones(3))
    assert torch.equal(rt.init.constant_(torch.empty(2, dtype=torch.float64), 0.5), torch.full((2,), 0.5, dtype=torch.float64))
    q = rt.init.orthogonal_(torch.empty(6, 6), seed=0)
    torch.testing.assert_close(q @ q.T, torch.eye(6), atol=1e-5, rtol=0)
    torch.manual_seed(4)
    a = rt.init.normal_(torch.empty(100))
    torch.manual_seed(4)
    assert torch.equal(a, rt.init.normal_(torch.empty(100)))  # torch.manual_seed drives the key
    b = rt.init.trunc_normal_(torch.empty(10_000), std=1.0, a=-0.5, b=0.5, seed=2)
    assert float(b.abs().max()) <= 0.5


def _model():
    return torch.nn.Sequential(
        torch.nn.Embedding(50, 16, padding_idx=3),
        torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2,
                                    enable_nested_tensor=False),
        torch.nn.Conv1d(16, 8, 3), torch.nn.BatchNorm1d(8), torch.nn.GRU(8, 12), torch.nn.Linear(12, 5),
    )  # fmt: skip


@torch.no_grad()
def test_reset_parameters_uses_torchs_distributions():
    m = _model()
    assert rt.init.reset_parameters(m, seed=11) == []
    emb, enc, conv, bn, gru, lin = m
    assert torch.equal(emb.weight[3], torch.zeros(16)) and abs(emb.weight[4:].std().item() - 1) < 0.05
    attn = enc.layers[0].self_attn
    bound = math.sqrt(6 / (16 + 48))
    assert float(attn.in_proj_weight.abs().max()) <= bound and float(attn.in_proj_weight.abs().max()) > 0.9 * bound
    assert torch.equal(attn.in_proj_bias, torch.zeros(48)) and torch.equal(attn.out_proj.bias, torch.zeros(16))
    assert float(attn.out_proj.weight.abs().max()) <= 1 / math.sqrt(16)  # Linear's Kaiming (a=sqrt(5)) bound
    assert float(conv.weight.abs().max()) <= 1 / math.sqrt(16 * 3) and float(conv.bias.abs().max()) <= 1 / math.sqrt(48)
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.running_var, torch.ones(8))
    assert all(float(p.abs().max()) <= 1 / math.sqrt(12) for p in gru.parameters())
    assert torch.equal(enc.layers[1].norm1.weight, torch.ones(16))
    assert float(lin.weight.abs().max()) <= 1 / math.sqrt(12)


def test_any_part_gets_the_values_it_has_in_the_whole_model():
    whole = _model()
    rt.init.reset_parameters(whole, seed=5)
    torch.manual_seed(99)  # a different construction order and RNG state change nothing
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    rt.init.reset_parameters(layer, seed=5, prefix="1.layers.1")
    for (n, a), b in zip(layer.named_parameters(), whole[1].layers[1].parameters()):
        assert torch.equal(a, b), n
    other = _model()
    rt.init.reset_parameters(other, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), whole.parameters()))
    rt.init.reset_parameters(other, seed=6)
    assert not torch.equal(other[5].weight, whole[5].weight)


def test_the_values_do_not_depend_on_threads():
    a, b = _model(), _model()
    with regtune.num_threads(1) if hasattr(regtune, "num_threads") else _threads(1):
        rt.init.reset_parameters(a, seed=1)
    rt.init.reset_parameters(b, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = regtune.get_num_threads()
        regtune.set_num_threads(self.n)

    def __exit__(self, *exc):
        regtune.set_num_threads(self.before)


def test_a_meta_model_materializes_and_unknown_modules_fall_back_by_name():
    with torch.device("meta"):
        m = _model()
    left = rt.init.materialize(m, seed=5)
    assert left == [] and m[5].weight.device.type == "cpu"
    whole = _model()
    rt.init.reset_parameters(whole, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), whole.parameters()))

    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s = torch.nn.Parameter(torch.zeros(3))

        def reset_parameters(self):
            torch.nn.init.ones_(self.s)

    net = torch.nn.Sequential(torch.nn.Linear(3, 3), Scale())
    assert rt.init.reset_parameters(net, seed=0) == ["1"] and torch.equal(net[1].s, torch.ones(3))


def test_a_meta_model_goes_straight_into_safetensors_shards(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ref = _model()
    rt.init.reset_parameters(ref, seed=3)
    want = ref.state_dict()
    with torch.device("meta"):
        m = _model()
    paths = rt.init.save_safetensors(m, 3, str(tmp_path / "model.safetensors"), max_shard_bytes=8000)
    assert len(paths) > 2 and paths[-1].endswith("model.safetensors.index.json")
    got = {}
    for p in paths[:-1]:
        shard = st.load_file(p)
        assert sum(a.nbytes for a in shard.values()) <= 8000 or len(shard) == 1
        got.update(shard)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k].numpy()) for k in want)
    assert all(p.device.type == "meta" for p in m.parameters())  # nothing kept allocated
    one = rt.init.save_safetensors(_model(), 3, str(tmp_path / "one.safetensors"))
    assert one == [str(tmp_path / "one.safetensors")] and set(st.load_file(one[0])) == set(want)
    with pytest.raises(ValueError, match="path must name a .safetensors file"):
        rt.init.save_safetensors(_model(), 3, str(tmp_path / "x.bin"))
    with pytest.raises(ValueError, match="max_shard_bytes must be an int >= 1"):
        rt.init.save_safetensors(_model(), 3, str(tmp_path / "x.safetensors"), max_shard_bytes=0)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rt.init.reset_parameters("model", 0), TypeError, r"module must be a torch.nn.Module"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), -1), TypeError, r"seed must be an int"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), 1.5), TypeError, r"seed must be an int"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), 0, prefix=3), TypeError, r"prefix must be a str"),
        (lambda: rt.init.normal_(np.zeros(3)), TypeError, r"tensor must be a torch.Tensor"),
        (lambda: rt.init.normal_(torch.empty(3, dtype=torch.int16), seed=0), TypeError, r"out must have dtype float32, float64, bfloat16 or float16"),
        (lambda: rt.init.uniform_(torch.empty(3), 1.0, 0.0, seed=0), ValueError, r"a must be < b|b must be"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_16bit_tensors_get_the_float32_values_rounded(dtype):
    # a bfloat16 tensor is filled through an int16 view of its memory (DLPack has no bfloat16)
    w = torch.empty(7, 9, dtype=dtype)
    rt.init.normal_(w, 0.0, 0.5, seed=3)
    assert torch.equal(w, torch.from_numpy(regtune.random.normal((7, 9), 0.0, 0.5, seed=3)).to(dtype))
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Conv1d(2, 3, 3))
    low = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Conv1d(2, 3, 3)).to(dtype)
    rt.init.reset_parameters(model, 11)
    rt.init.reset_parameters(low, 11)
    for (name, a), b in zip(low.named_parameters(), model.parameters()):
        assert a.dtype == dtype and torch.equal(a, b.detach().to(dtype)), name

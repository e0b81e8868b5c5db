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
    with torch.device("meta"):
        one = rt.init.save_safetensors(_model(), 3, str(tmp_path / "one.safetensors"))
    assert one == [str(tmp_path / "one.safetensors")] and set(st.load_file(one[0])) == set(want)
    with torch.device("meta"):
        meta = _model()
    with pytest.raises(ValueError, match="path must name a .safetensors file"):
        rt.init.save_safetensors(meta, 3, str(tmp_path / "x.bin"))
    with pytest.raises(ValueError, match="max_shard_bytes must be an int >= 1"):
        rt.init.save_safetensors(meta, 3, str(tmp_path / "x.safetensors"), max_shard_bytes=0)


def test_save_safetensors_refuses_a_model_with_memory_and_names_path_in_os_errors(tmp_path):
    pytest.importorskip("safetensors")
    cpu = _model()
    before = cpu[5].weight.detach().clone()
    with pytest.raises(ValueError, match=r"module must be built on the meta device .* '0.weight' is on cpu"):
        rt.init.save_safetensors(cpu, 3, str(tmp_path / "m.safetensors"))
    assert cpu[5].weight.device.type == "cpu" and torch.equal(cpu[5].weight, before)  # untouched
    bad = str(tmp_path / "missing" / "m.safetensors")
    with torch.device("meta"):
        meta = _model()
    with pytest.raises(OSError, match=r"path='.*missing/m.safetensors'"):
        rt.init.save_safetensors(meta, 3, bad)
    with pytest.raises(OSError, match=r"path='.*missing/m.safetensors'"):
        rt.init.save_safetensors(meta, 3, bad, max_shard_bytes=8000)
    assert all(t.device.type == "meta" for t in meta.state_dict().values())  # left on meta after the error


def test_save_safetensors_keeps_ties(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ref = _Tied()
    rt.init.reset_parameters(ref, seed=2)
    assert ref.head.weight is ref.emb.weight
    with torch.device("meta"):
        m = _Tied()
    for shard_bytes in (2**31, 300):  # one file, and the tied names in different shards
        paths = rt.init.save_safetensors(m, 2, str(tmp_path / f"t{shard_bytes}.safetensors"), max_shard_bytes=shard_bytes)
        got = {}
        for p in paths[:1] if len(paths) == 1 else paths[:-1]:
            got.update(st.load_file(p))
        assert set(got) == set(ref.state_dict())  # both tied names, as the state_dict has them
        assert all(np.array_equal(got[k], v.numpy()) for k, v in ref.state_dict().items())
        assert m.head.weight is m.emb.weight and m.emb.weight.device.type == "meta"  # the meta model's tie kept


def test_fills_take_what_torch_nn_init_takes():
    """A transposed weight gets the values a contiguous tensor of its shape gets (torch fills
    non-contiguous tensors; regtune through a contiguous buffer); a meta tensor is returned as
    it is (torch's init is a no-op there); constant fills of integer and bool tensors are
    torch's fill_; a parameter stays a parameter, filled in place."""
    w = torch.zeros(6, 4).t()
    ref = torch.zeros(4, 6)
    for fn in (rt.init.normal_, rt.init.xavier_uniform_, rt.init.kaiming_normal_, rt.init.trunc_normal_):
        assert fn(w, seed=5) is w and torch.equal(w, fn(ref, seed=5))
    strided = torch.zeros(4, 12)[:, ::2]
    assert torch.equal(rt.init.uniform_(strided, seed=3), rt.init.uniform_(torch.empty(4, 6), seed=3))
    m = torch.empty(3, 5, device="meta")
    assert rt.init.normal_(m, seed=1) is m and rt.init.ones_(m) is m
    assert torch.equal(rt.init.ones_(torch.zeros(3, dtype=torch.int64)), torch.ones(3, dtype=torch.int64))
    assert torch.equal(rt.init.constant_(torch.zeros(2, dtype=torch.bool), 1), torch.ones(2, dtype=torch.bool))
    p = torch.nn.Parameter(torch.zeros(5, 3))
    rt.init.orthogonal_(p.t(), seed=4)  # a view of a parameter that requires grad
    assert torch.equal(p.detach().t(), rt.init.orthogonal_(torch.empty(3, 5), seed=4))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rt.init.reset_parameters("model", 0), TypeError, r"module must be a torch.nn.Module"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), -1), TypeError, r"seed must be an int"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), 1.5), TypeError, r"seed must be an int"),
        (lambda: rt.init.reset_parameters(torch.nn.Linear(2, 2), 0, prefix=3), TypeError, r"prefix must be a str"),
        (lambda: rt.init.normal_(np.zeros(3)), TypeError, r"tensor must be a torch.Tensor"),
        (lambda: rt.init.normal_(torch.empty(3, dtype=torch.int16), seed=0), TypeError, r"tensor must have dtype float32, float64, bfloat16 or float16, got torch.int16"),
        (lambda: rt.init.xavier_uniform_(torch.empty(3, 3, dtype=torch.complex64), seed=0), TypeError, r"tensor must have dtype"),
        (lambda: rt.init.normal_(torch.zeros(3).expand(2, 3), seed=0), ValueError, r"tensor must not have elements that share memory"),
        (lambda: rt.init.ones_(torch.zeros(1, 3).expand(2, 3)), ValueError, r"tensor must not have elements that share memory"),
        (lambda: rt.init.normal_(torch.zeros(3, 3).to_sparse(), seed=0), TypeError, r"tensor must be a dense \(strided\) tensor"),
        (lambda: rt.init.constant_(torch.zeros(3, dtype=torch.int64), 1e30), ValueError, r"val=1e\+30 does not fit tensor's dtype torch.int64"),
        (lambda: rt.init.constant_(torch.zeros(3, dtype=torch.int64), "x"), TypeError, r"val must be a number"),
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


# ------------------------------------------------------------------ materialize: the model's own init
def _gpt2_config():
    transformers = pytest.importorskip("transformers")
    return transformers, transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=2000, n_positions=64, bos_token_id=0, eos_token_id=0
    )


def _n_sigma_bounds(t, std):
    """|sample std / std - 1| and |mean| / std, each divided by its standard error (n iid normals:
    sd(s) ~ std / sqrt(2 (n - 1)), sd(mean) = std / sqrt(n))."""
    n = t.numel()
    x = t.detach().double()
    return abs(x.std().item() / std - 1) * math.sqrt(2 * (n - 1)), abs(x.mean().item()) / std * math.sqrt(n)


def test_materialize_runs_gpt2s_own_init_keeps_its_tie_and_matches_hfs_statistics():
    transformers, cfg = _gpt2_config()
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(cfg)  # Hugging Face's own init, on the CPU
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(cfg)
    assert rt.init.materialize(model, seed=3) == []
    assert model.lm_head.weight is model.transformer.wte.weight  # to_empty unties them: restored
    refs = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        want = refs[name].detach()
        if bool((want == want.flatten()[0]).all()):  # LayerNorm ones, zero biases: exactly
            assert torch.equal(p.detach(), want), name
            continue
        # GPT-2's init: N(0, 0.02), the residual projections N(0, 0.02 / sqrt(2 n_layer)) (HF's Conv1D
        # has no reset_parameters: its weights are set by GPT-2's _init_weights alone)
        std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
        # 5 standard errors: two-sided 6e-7 per check, under 1e-4 over the 2 x 2 x 14 checks here
        for t in (p, want):  # ours, and HF's own (which checks the stated std is HF's)
            dev_std, dev_mean = _n_sigma_bounds(t, std)
            assert dev_std < 5 and dev_mean < 5, (name, dev_std, dev_mean)
    ids = torch.arange(64).reshape(2, 32) * 31 % cfg.vocab_size
    with torch.no_grad():
        ours, theirs = (m(ids, labels=ids).loss.item() for m in (model, ref))
    assert abs(ours - theirs) < 0.05 and abs(ours - math.log(cfg.vocab_size)) < 0.1


def test_materialize_is_deterministic_across_calls_and_thread_counts():
    transformers, cfg = _gpt2_config()

    def build(seed, threads):
        with torch.device("meta"):
            m = transformers.GPT2LMHeadModel(cfg)
        torch.manual_seed(seed + threads)  # torch's global RNG state changes nothing
        before_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with _threads(threads):
                rt.init.materialize(m, seed=seed)
        finally:
            torch.set_num_threads(before_torch)
        return m

    a, b, c = build(5, 1), build(5, 2), build(6, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.transformer.h[0].attn.c_attn.weight, c.transformer.h[0].attn.c_attn.weight)


def test_materialize_fills_bert_buffers_through_its_init():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=40)  # fmt: skip
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(cfg)
        # still under the meta device: the init code runs with the CPU as its default device (HF
        # skips its init when the default device is meta)
        assert rt.init.materialize(model, seed=1) == []
    emb = model.bert.embeddings
    assert torch.equal(emb.position_ids, torch.arange(40).expand(1, -1)) and not emb.token_type_ids.any()
    assert model.cls.predictions.decoder.weight is emb.word_embeddings.weight


class _Tied(torch.nn.Module):
    """A language-model shape: a head tied to the embedding, and the model's own _init_weights."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.body = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight

    def _init_weights(self, module):
        if isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.02)


def test_materialize_keys_each_fill_by_name_restores_ties_and_runs_the_root_init():
    with torch.device("meta"):
        m = _Tied()
    assert rt.init.materialize(m, seed=9, prefix="lm") == []
    assert m.head.weight is m.emb.weight
    key = np.random.SeedSequence(9, spawn_key=tuple(b"lm.emb.weight"))  # the first name's key
    assert np.array_equal(m.emb.weight.detach().numpy(), regtune.random.normal((50, 8), 0.0, 0.02, seed=key))
    ref = torch.nn.Linear(8, 8)
    rt.init.reset_parameters(ref, seed=9, prefix="lm.body")  # torch's Linear init, keyed alike
    assert torch.equal(m.body.weight, ref.weight) and torch.equal(m.body.bias, ref.bias)


class _TorchRandom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.empty(4, 3))
        self.v = torch.nn.Parameter(torch.empty(6))
        self.s = torch.nn.Parameter(torch.empty(5))
        self.u = torch.nn.Parameter(torch.empty(2))

    def reset_parameters(self):
        rt.init.uniform_(self.u, seed=11)  # regtune's own, called by the model: counts as set
        with torch.no_grad():
            self.w.copy_(torch.randn(4, 3))  # torch's global generator
            self.v.bernoulli_(0.5)  # a sampler regtune does not have: torch's, keyed by name
            self.s[:2].uniform_(-1, 1)  # parts of a tensor
            self.s[2:].normal_()


def test_materialize_keys_torchs_own_samplers_and_restores_torchs_rng():
    def build():
        with torch.device("meta"):
            m = _TorchRandom()
        rt.init.materialize(m, seed=4)
        return m

    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = build()
    assert torch.equal(torch.get_rng_state(), state)  # torch's RNG is left as it was
    torch.manual_seed(2)
    b = build()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert set(a.v.tolist()) <= {0.0, 1.0} and float(a.s.detach()[:2].abs().max()) <= 1
    assert not torch.equal(a.s[2:4], b.s[:2])  # each part its own key


class _Raw(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.w = torch.nn.Parameter(torch.empty(3))  # nothing initializes it
        self.register_buffer("steps", torch.arange(4))  # computed in __init__: lost on meta


def test_materialize_refuses_what_nothing_initialized():
    with torch.device("meta"):
        m = _Raw()
    with pytest.raises(ValueError, match=r"initialized 2 tensor\(s\): w, steps .*strict=False"):
        rt.init.materialize(m, seed=0)
    with torch.device("meta"):
        m = _Raw()
    with pytest.warns(RuntimeWarning, match=r"initialized 2 tensor\(s\): w, steps"):
        assert rt.init.materialize(m, seed=0, strict=False) == ["w", "steps"]
    assert torch.isnan(m.w).all() and not m.steps.any() and not torch.isnan(m.lin.weight).any()


def test_materialize_refuses_a_model_that_has_memory():
    lin = torch.nn.Linear(3, 3)
    before = lin.weight.detach().clone()
    with pytest.raises(ValueError, match=r"module must be built on the meta device .* 'weight' is on cpu"):
        rt.init.materialize(lin, seed=0)
    assert torch.equal(lin.weight, before)
    with torch.device("meta"):
        m = torch.nn.Linear(3, 3)
    with pytest.raises(TypeError, match="strict must be a bool"):
        rt.init.materialize(m, seed=0, strict=1)

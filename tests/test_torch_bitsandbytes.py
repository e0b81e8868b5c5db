"""regtune.torch.optim with state_dtype="int8", and its state in bitsandbytes' layout both ways
(regtune/torch/_bitsandbytes.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import regtune.torch.optim as rto  # noqa: E402
from regtune.optim import blockwise as bw  # noqa: E402


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(300, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))


def _steps(model, opt, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(32, 300, generator=g)
        y = torch.randint(0, 10, (32,), generator=g)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_8bit_state_tensors_and_an_exact_resume():
    m1 = _model()
    opt = rto.AdamW(m1.parameters(), lr=1e-2, state_dtype="int8")
    _steps(m1, opt, 3)
    st = opt.state[m1[0].weight]  # 19,200 elements: 8-bit
    assert st["exp_avg"].dtype == torch.uint8 and st["exp_avg"].shape == m1[0].weight.shape
    assert st["exp_avg_absmax"].dtype == torch.float32 and st["exp_avg_absmax"].shape == (75,)
    assert opt.state[m1[0].bias]["exp_avg"].dtype == torch.float32  # 64 elements: below min_8bit_size
    sd = copy.deepcopy(opt.state_dict())  # (torch's state_dict holds the live tensors, as a file would not)
    m2 = _model()
    m2.load_state_dict(m1.state_dict())
    opt2 = rto.AdamW(m2.parameters(), lr=1e-2, state_dtype="int8")
    opt2.load_state_dict(sd)
    assert opt2.state[m2[0].weight]["exp_avg"].dtype == torch.uint8  # not cast to the parameter's dtype
    _steps(m1, opt, 2, seed=5)
    _steps(m2, opt2, 2, seed=5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_8bit_state_of_bfloat16_parameters():
    m = _model().to(torch.bfloat16)
    opt = rto.Adam(m.parameters(), lr=1e-2, state_dtype="int8", precision="stochastic", seed=0)
    x = torch.randn(8, 300, dtype=torch.bfloat16)
    m(x).float().square().mean().backward()
    opt.step()
    assert opt.state[m[0].weight]["exp_avg_sq"].dtype == torch.uint8
    assert all(bool(torch.isfinite(p).all()) for p in m.parameters())


def test_a_float_state_is_refused_where_8bit_is_kept():
    m = _model()
    opt32 = rto.AdamW(m.parameters(), lr=1e-2)
    _steps(m, opt32, 1)
    sd = copy.deepcopy(opt32.state_dict())
    opt8 = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    opt8.load_state_dict(sd)  # the groups come from the checkpoint, as in torch: float32 state
    _steps(m, opt8, 1)
    assert opt8.state[m[0].weight]["exp_avg"].dtype == torch.float32
    for g in sd["param_groups"]:
        g["state_dtype"] = "int8"  # a checkpoint whose groups say int8 but whose state is float32
    opt8 = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    opt8.load_state_dict(sd)
    with pytest.raises(ValueError, match="blockwise 8-bit"):
        _steps(m, opt8, 1)


def test_tiny_gpt_style_model_trains_within_one_percent_of_float32_adamw():
    """A 2-layer GPT-style language model (embedding, causal self-attention, MLP) on a fixed
    synthetic text: 8-bit AdamW's final loss within 1% of float32 AdamW's."""
    torch.manual_seed(0)
    vocab, ctx, dim = 64, 32, 64

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
            self.attn = torch.nn.MultiheadAttention(dim, 4, batch_first=True)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))

        def forward(self, x):
            mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(vocab, dim), torch.nn.Embedding(ctx, dim)
            self.blocks = torch.nn.Sequential(Block(), Block())
            self.head = torch.nn.Linear(dim, vocab)

        def forward(self, idx):
            return self.head(self.blocks(self.tok(idx) + self.pos(torch.arange(idx.shape[1]))))

    g = torch.Generator().manual_seed(3)
    # a text with structure to learn: a random order-2 Markov chain over the vocabulary
    table = torch.randint(0, vocab, (vocab, vocab), generator=g)
    text = [1, 2]
    for _ in range(20_000):
        nxt = int(table[text[-2], text[-1]]) if torch.rand(1, generator=g) < 0.9 else int(torch.randint(0, vocab, (1,), generator=g))
        text.append(nxt)
    data = torch.tensor(text)
    starts = torch.randint(0, data.numel() - ctx - 1, (120, 16), generator=g)
    losses = {}
    for kind in ("fp32", "int8"):
        torch.manual_seed(0)
        model = GPT()
        kw = {"state_dtype": "int8"} if kind == "int8" else {}
        opt = rto.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, **kw)
        for s in starts:
            batch = torch.stack([data[i : i + ctx + 1] for i in s])
            loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).reshape(-1, vocab), batch[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # the final loss on a fixed evaluation set
            ev = torch.stack([data[i : i + ctx + 1] for i in range(0, 64 * 40, 40)])
            losses[kind] = float(torch.nn.functional.cross_entropy(model(ev[:, :-1]).reshape(-1, vocab), ev[:, 1:].reshape(-1)))
    assert losses["fp32"] < 3.0  # it learned (uniform: ln 64 = 4.16)
    assert abs(losses["int8"] - losses["fp32"]) <= 0.01 * losses["fp32"], losses


# ------------------------------------------------------------------------ bitsandbytes' layout
def test_state_moves_to_bitsandbytes_and_back_unchanged():
    bnb = pytest.importorskip("bitsandbytes")
    m = _model()
    opt = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    _steps(m, opt, 3)
    sd = rto.to_bitsandbytes(opt)
    ob = bnb.optim.AdamW8bit(m.parameters(), lr=1e-2)
    ob.load_state_dict(sd)
    w = m[0].weight
    assert torch.equal(ob.state[w]["state1"], opt.state[w]["exp_avg"])
    assert torch.equal(ob.state[w]["absmax2"], opt.state[w]["exp_avg_sq_absmax"])
    assert torch.equal(ob.state[w]["qmap1"], torch.from_numpy(bw.dynamic_map(True)))
    assert ob.state[w]["step"] == 3
    _steps(m, ob, 1)  # bitsandbytes steps from it
    # and back: regtune reads bitsandbytes' own state_dict as it is
    opt2 = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    opt2.load_state_dict(ob.state_dict())
    assert torch.equal(opt2.state[w]["exp_avg"], ob.state[w]["state1"])
    assert torch.equal(opt2.state[w]["exp_avg_sq_absmax"], ob.state[w]["absmax2"])
    assert float(opt2.state[w]["step"]) == 4
    assert opt2.state[m[0].bias]["exp_avg"].dtype == torch.float32
    _steps(m, opt2, 1)


def test_bitsandbytes_optimizer_state_decodes_the_same_in_regtune():
    """A state bitsandbytes made itself (its own CPU quantization) loads into regtune with the
    same codes, and a regtune step continues from the values bitsandbytes' decoding gives."""
    bnb = pytest.importorskip("bitsandbytes")
    F = pytest.importorskip("bitsandbytes.functional")
    m = _model()
    ob = bnb.optim.AdamW8bit(m.parameters(), lr=1e-2)
    _steps(m, ob, 2)
    w = m[0].weight
    opt = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    opt.load_state_dict(ob.state_dict())
    st = ob.state[w]
    qs = F.QuantState(absmax=st["absmax1"], code=st["qmap1"], blocksize=256, dtype=torch.float32)
    theirs = F.dequantize_blockwise(st["state1"], qs).numpy()
    ours = bw.dequantize_blockwise(opt.state[w]["exp_avg"].numpy(), opt.state[w]["exp_avg_absmax"].numpy())
    assert np.array_equal(theirs, ours)


def test_to_bitsandbytes_refuses_what_it_cannot_carry():
    m = _model()
    with pytest.raises(ValueError, match="to_bitsandbytes takes"):
        rto.to_bitsandbytes(rto.RMSprop(m.parameters(), state_dtype="int8"))
    opt = rto.AdamW(m.parameters())
    _steps(m, opt, 1)
    with pytest.raises(ValueError, match="only 'int8' state"):
        rto.to_bitsandbytes(opt)
    opt = rto.AdamW(m.parameters(), state_dtype="int8", l1=1e-3)
    _steps(m, opt, 1)
    with pytest.raises(ValueError, match=r"\['l1'\]=0.001 has no bitsandbytes counterpart"):
        rto.to_bitsandbytes(opt)


def test_bitsandbytes_options_without_a_regtune_counterpart_are_refused_on_load():
    bnb = pytest.importorskip("bitsandbytes")
    m = _model()
    ob = bnb.optim.AdamW8bit(m.parameters(), lr=1e-2)
    _steps(m, ob, 1)
    sd = ob.state_dict()
    sd["param_groups"][0]["percentile_clipping"] = 5  # bitsandbytes' adaptive clipping: no counterpart
    opt = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    with pytest.raises(ValueError, match="percentile_clipping"):
        opt.load_state_dict(sd)


def test_int8_as_a_group_key_steps_as_the_keyword():
    m1, m2 = _model(), _model()
    kw = rto.AdamW(m1.parameters(), lr=1e-2, state_dtype="int8", min_8bit_size=1000)
    group = rto.AdamW([{"params": m2.parameters(), "state_dtype": "int8", "min_8bit_size": 1000}], lr=1e-2)
    _steps(m1, kw, 2)
    _steps(m2, group, 2)
    assert group.state[m2[0].weight]["exp_avg"].dtype == torch.uint8  # 19,200 elements
    assert group.state[m2[2].weight]["exp_avg"].dtype == torch.float32  # 640: below min_8bit_size
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_codes_without_their_absmax_are_refused():
    m = _model()
    opt = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    _steps(m, opt, 1)
    sd = copy.deepcopy(opt.state_dict())
    del sd["state"][0]["exp_avg_absmax"]
    opt2 = rto.AdamW(m.parameters(), lr=1e-2, state_dtype="int8")
    opt2.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"state\['exp_avg_absmax'\] of a parameter of shape \(64, 300\) is missing"):
        _steps(m, opt2, 1)

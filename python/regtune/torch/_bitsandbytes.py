"""Blockwise 8-bit optimizer state in bitsandbytes' layout, both ways.

regtune's ``state_dtype="int8"`` keeps each state buffer of a parameter with at least
``min_8bit_size`` elements as uint8 codes of bitsandbytes' dynamic map (signed for the first
moment, unsigned for the second) and a float32 absmax per block of 256 elements, the layout of
``bitsandbytes.optim.AdamW8bit`` and its kin. Only the names differ: regtune keeps torch's
buffer names (``exp_avg``, ``exp_avg_absmax``, ...), bitsandbytes ``state1``, ``absmax1``,
``qmap1``, ``state2``, ... under ``"__bnb_optimizer_quant_state__"``. :func:`to_bitsandbytes`
writes a regtune optimizer's state in bitsandbytes' layout; a regtune optimizer's
``load_state_dict`` reads bitsandbytes' layout as it is. Codes move unchanged (both use the same
maps); a state saved with another map (a ``qmap`` that is not the dynamic map) is decoded with
it and encoded again with regtune's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _core

_QUANT = "__bnb_optimizer_quant_state__"
#: The bitsandbytes class whose state layout each rule shares.
_BNB_CLASS = {"adamw": "AdamW8bit", "adam": "Adam8bit", "lion": "Lion8bit", "sgd": "SGD8bit"}
#: bitsandbytes' group options regtune has no use for, with the value under which the step is
#: the same; another value is refused on load (it would change the step).
_BNB_NEUTRAL = {"alpha": 0.0, "t_alpha": None, "t_beta3": None, "percentile_clipping": 100, "max_unorm": 0.0,
                "skip_zeros": False}  # fmt: skip
_BNB_IGNORED = ("optim_bits", "min_8bit_size", "block_wise", "is_paged")
#: regtune's group options bitsandbytes has no equivalent for, with their neutral values.
_REGTUNE_ONLY = {"l1": 0.0, "prox_l1": 0.0, "max_grad_norm": None, "precision": "round", "seed": None, "maximize": False}


def _slots(opt: Any) -> tuple[list[str], list[bool]]:
    """The buffer names bitsandbytes calls state1, state2 (the rule's first two) and whether each is signed."""
    group = opt.param_groups[0]
    dt = np.dtype(np.float32)
    rule = opt._regtune([np.empty(0, dt)], **opt._group_hyper(group)).rule
    nonneg = _core_rule(rule.core)["nonnegative"]
    names = [(n, not nonneg[k]) for k, n in enumerate(rule.slots()) if n][:2]
    return [n for n, _ in names], [s for _, s in names]


def _core_rule(core: str) -> dict[str, Any]:
    return next(r for r in _core.optim_rules() if r["name"] == core)


def _is_bnb(state_dict: Any) -> bool:
    state = state_dict.get("state") if isinstance(state_dict, dict) else None
    return isinstance(state, dict) and any(
        isinstance(st, dict) and (_QUANT in st or "state1" in st) for st in state.values()
    )


def _map(signed: bool) -> torch.Tensor:
    return torch.from_numpy(_core.dynamic_map(signed))


def from_bitsandbytes(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` in regtune's layout for ``opt`` when it is in bitsandbytes' (else as given)."""
    if not _is_bnb(state_dict):
        return state_dict
    names, signed = _slots(opt)
    state = {}
    for pid, st in state_dict["state"].items():
        where = f"state_dict['state'][{pid!r}]"
        st = dict(st)
        st.update(st.pop(_QUANT, {}))
        if "step" not in st:
            raise ValueError(f"{where} lacks 'step'")
        out: dict[str, Any] = {"step": torch.tensor(float(st["step"]), dtype=torch.float32)}
        for k, (name, sgn) in enumerate(zip(names, signed), start=1):
            s = st.get(f"state{k}")
            if not isinstance(s, torch.Tensor):
                raise ValueError(f"{where} lacks state{k} (bitsandbytes' {name})")
            if s.dtype != torch.uint8:
                out[name] = s.detach().to(torch.float32, copy=True)
                continue
            absmax = st.get(f"absmax{k}")
            blocks = -(-s.numel() // _core.Q8_BLOCK)
            if not isinstance(absmax, torch.Tensor) or absmax.numel() != blocks:
                raise ValueError(f"{where}['absmax{k}'] must hold {blocks} float32 values (one per block of "
                                 f"{_core.Q8_BLOCK}), as bitsandbytes' block-wise state")  # fmt: skip
            absmax = absmax.detach().to(torch.float32).reshape(-1).contiguous()
            codes = s.detach().contiguous()
            qmap = st.get(f"qmap{k}")
            if isinstance(qmap, torch.Tensor) and not torch.equal(qmap.to(torch.float32), _map(sgn)):
                # another map: decoded with it, encoded with regtune's
                values = qmap.to(torch.float32)[codes.reshape(-1).long()]
                values = values * absmax.repeat_interleave(_core.Q8_BLOCK)[: codes.numel()]
                c, a = _core.quantize_blockwise(values.numpy().reshape(codes.shape), sgn)
                codes, absmax = torch.from_numpy(c), torch.from_numpy(a)
            out[name] = codes.clone()
            out[name + "_absmax"] = absmax.clone()
        state[pid] = out
    groups = []
    for i, g in enumerate(state_dict["param_groups"]):
        g = dict(g)
        for k, neutral in _BNB_NEUTRAL.items():
            if k in g and g.pop(k) != neutral and not (neutral == 0.0 and g.get(k) == 0):
                raise ValueError(f"state_dict['param_groups'][{i}][{k!r}] is bitsandbytes' option with no "
                                 f"regtune counterpart: only {neutral!r} loads")  # fmt: skip
        for k in _BNB_IGNORED:
            g.pop(k, None)
        groups.append(g)
    return {"state": state, "param_groups": groups}


def to_bitsandbytes(optimizer: Any) -> dict[str, Any]:
    """The state of a regtune.torch.optim ``AdamW``, ``Adam``, ``Lion`` or ``SGD`` optimizer
    with ``state_dtype="int8"`` in the layout of bitsandbytes' ``AdamW8bit`` (``Adam8bit``,
    ``Lion8bit``, ``SGD8bit``), for its ``load_state_dict``: the same codes and absmax, with the
    maps as ``qmap1`` / ``qmap2``; float32 state (parameters below ``min_8bit_size``) as
    bitsandbytes keeps it. Groups carry bitsandbytes' own options at their defaults.

    Raises:
        ValueError: another optimizer, state that is not 8-bit, or an option bitsandbytes has
        no counterpart for (``l1``, ``max_grad_norm``, ``maximize``, ...) set.

    Note that bitsandbytes' ``Adam8bit`` decays the weights as ``AdamW8bit`` does (decoupled);
    regtune's ``Adam`` (as torch's) adds an L2 term: the state means the same, the step does not
    when ``weight_decay`` is set.
    """
    key = getattr(getattr(type(optimizer), "_regtune", None), "rule_class", None)
    key = getattr(key, "key", None)
    if key not in _BNB_CLASS:
        raise ValueError(f"to_bitsandbytes takes a regtune.torch.optim {', '.join(sorted(_BNB_CLASS))} "
                         f"optimizer, got {type(optimizer).__name__}")  # fmt: skip
    sd = optimizer.state_dict()
    names, signed = _slots(optimizer)
    state = {}
    for pid, st in sd["state"].items():
        quant: dict[str, torch.Tensor] = {}
        for k, (name, sgn) in enumerate(zip(names, signed), start=1):
            v = st[name]
            if v.dtype == torch.uint8:
                quant[f"state{k}"] = v.clone()
                quant[f"absmax{k}"] = st[name + "_absmax"].clone()
                quant[f"qmap{k}"] = _map(sgn)
            else:
                quant[f"state{k}"] = v.to(torch.float32, copy=True)
        state[pid] = {"step": int(st["step"]), _QUANT: quant}
    groups = []
    for i, g in enumerate(sd["param_groups"]):
        if g.get("state_dtype") not in ("int8", torch.int8):
            raise ValueError(f"param_groups[{i}] has state_dtype={g.get('state_dtype')!r}: only 'int8' state "
                             "moves to bitsandbytes' 8-bit optimizers")  # fmt: skip
        out = {}
        for k, v in g.items():
            if k in _REGTUNE_ONLY:
                if v != _REGTUNE_ONLY[k]:
                    raise ValueError(f"param_groups[{i}][{k!r}]={v!r} has no bitsandbytes counterpart")
                continue
            if k not in ("state_dtype", "min_8bit_size", "foreach", "fused", "capturable", "differentiable"):
                out[k] = v
        out.update({k: v for k, v in _BNB_NEUTRAL.items() if k not in ("percentile_clipping", "max_unorm", "skip_zeros")})
        out.setdefault("min_8bit_size", g.get("min_8bit_size", 4096))
        out.setdefault("percentile_clipping", 100)
        out.setdefault("block_wise", True)
        out.setdefault("max_unorm", 0.0)
        out.setdefault("skip_zeros", False)
        out.setdefault("optim_bits", 8)
        out.setdefault("is_paged", False)
        groups.append(out)
    return {"state": state, "param_groups": groups}

"""regtune.torch against torch in one torch process (the way a PyTorch user runs it):

- dropout forward + backward through autograd on 4096 x 4096 float32: ``regtune.torch.nn.Dropout``
  (the backward regenerates the mask) against ``torch.nn.Dropout``, and the bytes of the tensors
  autograd saves between them (``torch.autograd.graph.saved_tensors_hooks``);
- an optimizer step on ResNet-18's 62 parameter shapes (11.7 M parameters), GPT-2's 148 (124 M)
  and one 4096 x 4096 tensor: ``regtune.torch.optim.AdamW`` / ``SGD`` against torch's
  ``fused=True`` step, the calls alternating (each one right after the other library's);
- the AdamW step inside a torch training loop (forward, backward, step; torch's defaults, so its
  OpenMP threads are awake after the backward): a small transformer (``--loop-width``), the
  median step time of each library over interleaved iterations;
- initializing a transformer-shaped model (``--layers`` encoder layers of width ``--width``, an
  embedding and a head: 1.0 B parameters by default, 4 GiB of float32) built on the meta device
  and allocated once: ``regtune.torch.init.reset_parameters(model, seed)`` against torch's own
  ``reset_parameters`` of every module (what constructing the model on the CPU runs).

Both libraries run on the same threads (``torch.set_num_threads`` and regtune's default), calls
alternate, and each figure is the minimum over ``--repeats`` rounds (noise only adds time).

    python bench/bench_torch.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_roofline import resnet18_shapes  # noqa: E402

import regtune  # noqa: E402
import regtune.torch as rt  # noqa: E402


def _min_times(fns: dict, repeats: int) -> dict:
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _saved_bytes(module, x) -> int:
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    y.backward(torch.ones_like(y))
    return sum(saved)


def dropout_case(n: int, repeats: int) -> None:
    x = torch.randn(n, n, requires_grad=True)
    dy = torch.randn(n, n)
    mods = {"regtune.torch.nn.Dropout": rt.nn.Dropout(0.5), "torch.nn.Dropout": torch.nn.Dropout(0.5)}

    def run(m):
        def f():
            x.grad = None
            m(x).backward(dy)

        return f

    t = _min_times({k: run(m) for k, m in mods.items()}, repeats)
    print(f"dropout p=0.5 forward + backward, {n}x{n} float32:")
    for k, m in mods.items():
        print(f"  {k:<26s} {t[k] * 1e3:8.2f} ms   saved for backward: {_saved_bytes(m, x) / 2**20:6.1f} MiB")
    ratio = t["torch.nn.Dropout"] / t["regtune.torch.nn.Dropout"]
    print(f"  speed-up {ratio:.1f}x (target >= 20x), regtune saves no mask (only its 8-byte key): "
          f"{_saved_bytes(mods['regtune.torch.nn.Dropout'], x) <= 8}")  # fmt: skip


def optimizer_case(name: str, shapes, what: str, repeats: int, kw: dict) -> None:
    """Each library steps its own copy of the same parameters and gradients, calls alternating.
    Where the memory lies decides a memory-bound step as much as the library: on the VM one
    library stepped a 50257x768 SGD momentum step in 19.5 ms on one copy and the other in 16.3 ms
    on the other, and 17.5 / 17.0 ms with the copies swapped. So the case runs twice, the copies
    swapped (new optimizers, new state), and each library's figure is its minimum over both."""
    torch.manual_seed(0)
    copies = [[torch.nn.Parameter(torch.randn(s)) for s in shapes]]
    copies.append([torch.nn.Parameter(p.detach().clone()) for p in copies[0]])
    for a, b in zip(*copies):
        a.grad = torch.randn(a.shape)
        b.grad = a.grad.clone()
    ours, theirs = f"regtune.torch.optim.{name}", f"torch.optim.{name}(fused=True)"
    t = {ours: float("inf"), theirs: float("inf")}
    for mine, other in ((0, 1), (1, 0)):
        opts = {ours: getattr(rt.optim, name)(copies[mine], **kw),
                theirs: getattr(torch.optim, name)(copies[other], **kw, fused=True)}  # fmt: skip
        for o in opts.values():  # warm: the state exists before timing
            o.step()
        for k, v in _min_times({k: o.step for k, o in opts.items()}, repeats).items():
            t[k] = min(t[k], v)
        del opts
    n = sum(p.numel() for p in copies[0])
    print(f"{name} step, {what} ({n / 1e6:.1f} M parameters; each library's best of both copies):")
    for k in t:
        print(f"  {k:<36s} {t[k] * 1e3:8.2f} ms")
    print(f"  time ratio regtune / torch fused {t[ours] / t[theirs]:.3f} (target <= 1.0)")


def gpt2_shapes(layers: int = 12, width: int = 768, vocab: int = 50257, positions: int = 1024) -> list:
    """The parameter shapes of Hugging Face's GPT-2 (124 M: 148 tensors; Conv1D weights are
    (in, out)), in model.parameters() order; the head is tied to the embedding."""
    shapes = [(vocab, width), (positions, width)]
    for _ in range(layers):
        shapes += [(width,), (width,), (width, 3 * width), (3 * width,), (width, width), (width,),
                   (width,), (width,), (width, 4 * width), (4 * width,), (4 * width, width), (width,)]  # fmt: skip
    return shapes + [(width,), (width,)]


def loop_case(width: int, layers: int, iters: int) -> None:
    """The step inside a training loop: each library's model (the same init) runs forward and
    backward, then its optimizer steps; iterations alternate between the libraries."""

    def model():
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(width, max(1, width // 64), 4 * width, batch_first=True)
        return torch.nn.Sequential(torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False),
                                   torch.nn.Linear(width, width))  # fmt: skip

    runs = {}
    for k, make in (("regtune.torch.optim.AdamW", rt.optim.AdamW),
                    ("torch.optim.AdamW(fused=True)", lambda ps, **kw: torch.optim.AdamW(ps, **kw, fused=True))):  # fmt: skip
        m = model()
        runs[k] = (m, make(m.parameters(), lr=1e-4))
    x = torch.randn(8, 64, width)
    times = {k: [] for k in runs}
    for it in range(iters + 5):
        for k, (m, opt) in runs.items():
            opt.zero_grad()
            m(x).square().mean().backward()
            t0 = time.perf_counter()
            opt.step()
            if it >= 5:
                times[k].append(time.perf_counter() - t0)
    m = runs["regtune.torch.optim.AdamW"][0]
    n, count = sum(p.numel() for p in m.parameters()), len(list(m.parameters()))
    print(f"AdamW step inside a training loop (transformer, {layers} layers of width {width}: {n / 1e6:.1f} M "
          f"parameters in {count} tensors), median of {iters}:")  # fmt: skip
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:<36s} {v * 1e3:8.3f} ms")
    r = med["regtune.torch.optim.AdamW"] / med["torch.optim.AdamW(fused=True)"]
    print(f"  time ratio regtune / torch fused {r:.3f} (target <= 1.0)")


def _torch_default_init(model: torch.nn.Module) -> None:
    """What constructing the model runs: each module's own reset (MultiheadAttention's is
    _reset_parameters, after its out_proj's)."""
    with torch.no_grad():
        for m in reversed(list(model.modules())):
            if isinstance(m, torch.nn.MultiheadAttention):
                m._reset_parameters()
            elif hasattr(m, "reset_parameters") and not isinstance(m, torch.nn.TransformerEncoder):
                m.reset_parameters()


def init_case(layers: int, width: int, vocab: int, repeats: int) -> None:
    with torch.device("meta"):
        layer = torch.nn.TransformerEncoderLayer(width, width // 128, 4 * width, batch_first=True)
        model = torch.nn.Sequential(
            torch.nn.Embedding(vocab, width),
            torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False),
            torch.nn.Linear(width, vocab),
        )
    model.to_empty(device="cpu")
    n = sum(p.numel() for p in model.parameters())
    t = _min_times({"regtune.torch.init.reset_parameters": lambda: rt.init.reset_parameters(model, 0),
                    "torch reset_parameters": lambda: _torch_default_init(model)}, repeats)  # fmt: skip
    print(f"initializing a transformer ({layers} layers, width {width}, vocabulary {vocab}): {n / 1e9:.2f} B "
          f"parameters, {4 * n / 2**30:.1f} GiB float32:")  # fmt: skip
    for k, v in t.items():
        print(f"  {k:<36s} {v:8.2f} s")
    print(f"  speed-up {t['torch reset_parameters'] / t['regtune.torch.init.reset_parameters']:.1f}x (target >= 10x)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=17)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--init-repeats", type=int, default=3)
    ap.add_argument("--loop-width", type=int, default=256)
    ap.add_argument("--loop-iters", type=int, default=30)
    a = ap.parse_args(argv)
    torch.set_num_threads(regtune.get_num_threads())
    print(f"regtune {regtune.config()['simd']}, {regtune.get_num_threads()} threads; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    dropout_case(a.n, a.repeats)
    for name, kw in (("AdamW", dict(lr=1e-3)), ("SGD", dict(lr=1e-2, momentum=0.9))):
        optimizer_case(name, resnet18_shapes(), "ResNet-18 shapes", a.repeats, kw)
        optimizer_case(name, gpt2_shapes(), "GPT-2 shapes", a.repeats, kw)
        optimizer_case(name, [(a.n, a.n)], f"{a.n}x{a.n}", a.repeats, kw)
    loop_case(a.loop_width, 2, a.loop_iters)
    init_case(a.layers, a.width, a.vocab, a.init_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

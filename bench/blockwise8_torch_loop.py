"""bench/blockwise8_torch_loop.py: the AdamW step time inside a torch forward/backward loop (torch's defaults: its OpenMP workers
spin after each op): torch fused fp32 vs regtune.torch fp32 vs regtune.torch int8, interleaved,
on a 1024-4096-1024 MLP (8.4 M parameters), median of 20 steps after 5. The first argument is a
label for the output (``idle``, ``busy``); run it beside spinning processes for the busy case.

    python bench/blockwise8_torch_loop.py idle
"""
import sys, time, torch, numpy as np
import regtune.torch as rt
torch.manual_seed(0)
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024))
ms = {k: model() for k in ("torch fused", "regtune fp32", "regtune int8")}
opts = {"torch fused": torch.optim.AdamW(ms["torch fused"].parameters(), lr=1e-4, fused=True),
        "regtune fp32": rt.optim.AdamW(ms["regtune fp32"].parameters(), lr=1e-4),
        "regtune int8": rt.optim.AdamW(ms["regtune int8"].parameters(), lr=1e-4, state_dtype="int8")}
x = torch.randn(64, 1024)
times = {k: [] for k in ms}
for it in range(25):
    for k, m in ms.items():
        loss = m(x).square().mean()
        opts[k].zero_grad()
        loss.backward()
        t = time.perf_counter(); opts[k].step(); dt = time.perf_counter() - t
        if it >= 5: times[k].append(dt)
ref = np.median(times["torch fused"])
for k, v in times.items():
    print(f"{sys.argv[1] if len(sys.argv) > 1 else ''} {k:14s} median step {np.median(v)*1e3:7.2f} ms  ({ref/np.median(v):.2f}x torch fused)")

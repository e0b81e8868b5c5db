"""regtune.augment vs albumentations: images/s (and whether torchvision.transforms.v2 loads).

Run::

    python bench/bench_augment.py [--seconds 2] [--threads 1,2]

Cases (the issue's acceptance):

- (a) 32x32 uint8, RandomCrop(32, padding=4) + HorizontalFlip + Normalize, with and without
  RandomErasing (cutout, p=0.5): at least 5x albumentations;
- (b) 500x375 uint8 (W x H), RandomResizedCrop(224) (antialiased, the default) + HorizontalFlip +
  Normalize: at least 3x; ``b-plain`` the same with ``antialias=False``;
- (c) the ImageNet recipe with a policy: RandomResizedCrop(224) + HorizontalFlip +
  TrivialAugmentWide + Normalize + RandomErasing(0.25): at least 5x albumentations' closest
  equivalent;
- (d) the CIFAR recipe: RandomCrop(32, padding=4) + HorizontalFlip + AutoAugment("cifar10") +
  Normalize (+ RandomErasing(0.5)): reported.

What is timed, the same for every library: making a float32 batch from a uint8 batch that
is already in memory. regtune: one ``pipe(images, indices=, epoch=, out=)`` call per batch,
NCHW output into a preallocated array. albumentations: its ``Compose`` called on each HWC image
(that is its API), each result copied into a preallocated NHWC float32 batch (what a
DataLoader's collate does; HWC -> CHW is left as a free view, ToTensorV2's way). The libraries
take turns round by round for at least ``--seconds`` s each case (so a change in the machine's
load hits them alike), and the medians are reported: wall-clock images/s, and images per
CPU-second of the process (all its threads).

Threads: regtune uses ``regtune.set_num_threads(n)``. albumentations runs in this one process,
single-threaded in its Python code; its OpenCV calls are limited with ``cv2.setNumThreads(n)``
(and OMP/OpenBLAS threads to 1 before import), so its "2 threads" row is what one process gets;
a DataLoader would add worker processes, each paying the per-image Python cost again.

albumentations' choices: ``PadIfNeeded(40, 40, BORDER_CONSTANT) + RandomCrop(32, 32)`` is
torchvision's ``RandomCrop(32, padding=4)``; ``Erasing`` (its RandomErasing, p=0.5);
``RandomResizedCrop((224, 224))`` with OpenCV ``INTER_AREA`` for (b) (OpenCV's antialiased
shrink, a box filter where regtune and torchvision use a triangle) and ``INTER_LINEAR`` for
b-plain (regtune's antialias=False resampling). albumentations has no TrivialAugment or
AutoAugment: (c) uses ``OneOf`` over its 14 closest ops (NoOp, Affine shear x/y, translate x/y,
rotate, brightness, ColorJitter saturation, contrast, Sharpen, Posterize, Solarize, AutoContrast,
Equalize), (d) ``SomeOf(n=2)`` over the same ops plus InvertImg (AutoAugment applies two ops of a
sub-policy, each with a probability); the work per image is comparable, the distributions are not
the policies'.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

if __name__ == "__main__":  # run as a script: the peers' own pools to 1 thread before they load. Not
    # on import: bench/report.py's pytest run imports every bench_*.py, and regtune reads
    # OMP_NUM_THREADS for its default thread count, so the whole suite would run on one thread.
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _time_all(fns: dict, n_images: int, seconds: float) -> dict[str, tuple[float, float]]:
    """{impl: (images/s, images per CPU-second)}: the libraries take turns, one round each, for
    rounds filling ``seconds`` (at least 5 each) after one warm-up round, so that a change in the
    machine's load falls on all of them alike. Medians of the wall time per round and of the
    process's CPU time (all its threads) per round; on a shared machine the second moves less
    with the load."""
    for fn in fns.values():
        fn(0)
    walls = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    start, r = time.perf_counter(), 1
    while r <= 5 or time.perf_counter() - start < seconds:
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(r)
            walls[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
        r += 1
    return {k: (n_images / statistics.median(walls[k]), n_images / max(statistics.median(cpus[k]), 1e-9)) for k in fns}


def _regtune_case(name: str, images: np.ndarray):
    from regtune import augment as A

    if name.startswith("a"):
        ops = [A.RandomCrop(32, padding=4), A.HorizontalFlip(), A.Normalize(MEAN, STD)]
        if name == "a+erasing":
            ops.append(A.RandomErasing(0.5))
    elif name.startswith("d"):
        ops = [A.RandomCrop(32, padding=4), A.HorizontalFlip(), A.AutoAugment("cifar10"), A.Normalize(MEAN, STD)]
        if name == "d+erasing":
            ops.append(A.RandomErasing(0.5))
    elif name == "c":
        ops = [A.RandomResizedCrop(224), A.HorizontalFlip(), A.TrivialAugmentWide(), A.Normalize(MEAN, STD),
               A.RandomErasing(0.25)]  # fmt: skip
    else:
        ops = [A.RandomResizedCrop(224, antialias=name != "b-plain"), A.HorizontalFlip(), A.Normalize(MEAN, STD)]
    pipe = A.Pipeline(ops, seed=0, layout="NCHW")
    out = np.empty(pipe.output_shape(images.shape), np.float32)
    out.fill(0)
    idx = np.arange(len(images))
    return lambda r: pipe(images, indices=idx, epoch=r, out=out)


def _albumentations_case(name: str, images: np.ndarray):
    import albumentations as alb
    import cv2

    def policy_ops(invert):
        ops = [alb.NoOp(p=1), alb.Affine(shear={"x": (-16, 16)}, p=1), alb.Affine(shear={"y": (-16, 16)}, p=1),
               alb.Affine(translate_px={"x": (-32, 32)}, p=1), alb.Affine(translate_px={"y": (-32, 32)}, p=1),
               alb.Affine(rotate=(-135, 135), p=1), alb.RandomBrightnessContrast((-0.99, 0.99), 0, p=1),
               alb.ColorJitter(0, 0, (0.01, 1.99), 0, p=1), alb.RandomBrightnessContrast(0, (-0.99, 0.99), p=1),
               alb.Sharpen(p=1), alb.Posterize((2, 8), p=1), alb.Solarize((0.0, 1.0), p=1), alb.AutoContrast(p=1),
               alb.Equalize(p=1)]  # fmt: skip
        return ops + ([alb.InvertImg(p=1)] if invert else [])

    if name.startswith("a") or name.startswith("d"):
        ops = [alb.PadIfNeeded(40, 40, border_mode=cv2.BORDER_CONSTANT, fill=0), alb.RandomCrop(32, 32),
               alb.HorizontalFlip()]  # fmt: skip
        if name.startswith("d"):
            ops.append(alb.SomeOf(policy_ops(True), n=2, p=1))
        ops.append(alb.Normalize(MEAN, STD))
        if name.endswith("+erasing"):
            ops.append(alb.Erasing(p=0.5))
        shape = images.shape
    else:
        interp = cv2.INTER_LINEAR if name == "b-plain" else cv2.INTER_AREA
        ops = [alb.RandomResizedCrop((224, 224), interpolation=interp), alb.HorizontalFlip()]
        if name == "c":
            ops.append(alb.OneOf(policy_ops(False), p=1))
        ops.append(alb.Normalize(MEAN, STD))
        if name == "c":
            ops.append(alb.Erasing(p=0.25))
        shape = (len(images), 224, 224, 3)
    t = alb.Compose(ops, seed=0)
    out = np.zeros(shape, np.float32)

    def run(r):
        for i, im in enumerate(images):
            out[i] = t(image=im)["image"]

    return run


def _torchvision_status() -> str | None:
    """None when torchvision.transforms.v2 loads with this torch, else why not."""
    try:
        import torchvision  # noqa: F401
        from torchvision.transforms import v2  # noqa: F401
    except Exception as exc:  # ImportError, or a RuntimeError from a build for another torch
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--cases", default="", help="comma-separated cases (default all: a,a+erasing,b,b-plain,c,d,d+erasing)")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]

    import regtune

    rng = np.random.default_rng(0)
    data = {
        "a": rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8),
        "b": rng.integers(0, 256, (64, 375, 500, 3), dtype=np.uint8),
    }
    cases = [("a", data["a"], 5.0), ("a+erasing", data["a"], 5.0), ("b", data["b"], 3.0), ("b-plain", data["b"], 3.0),
             ("c", data["b"], 5.0), ("d", data["a"], 0.0), ("d+erasing", data["a"], 0.0)]
    if args.cases:
        cases = [c for c in cases if c[0] in args.cases.split(",")]
    impls = {"regtune": _regtune_case}
    try:
        import albumentations
        import cv2

        impls["albumentations"] = _albumentations_case
        alb_version = f"albumentations {albumentations.__version__}, OpenCV {cv2.__version__}"
    except ImportError:
        cv2 = None
        alb_version = "albumentations not installed (pip install albumentations)"
    # torchvision.transforms.v2 is only reported on: no build for this torch loaded here (0.28.0
    # fails on its C++ operators, 0.29.2 does not install), so there is no timed case for it
    # until one does; then add it to ``impls`` like the others.
    tv = _torchvision_status()

    cfg = regtune.config()
    print(f"regtune {regtune.__version__}, SIMD {cfg.get('simd')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; Python {platform.python_version()}, NumPy {np.__version__}")  # fmt: skip
    print(alb_version)
    print("torchvision.transforms.v2: " + ("loads, but has no timed case yet" if tv is None else f"not loaded ({tv})"))
    print("(a, d) 1024 x 32x32x3 uint8; (b, c) 64 x 375x500x3 uint8; libraries in turns, medians of rounds "
          f"over {args.seconds:g} s; images/s (wall), ratio = regtune / peer; in brackets images per "
          "CPU-second of the process and its ratio\n")  # fmt: skip
    header = f"{'case':<11}{'threads':>8}" + "".join(f"{k:>16}" for k in impls) + "".join(
        f"{'vs ' + k:>20}" for k in impls if k != "regtune") + "   [CPU-s: " + " ".join(impls) + ", ratio]"  # fmt: skip
    print(header)
    failed = []
    for name, images, target in cases:
        for n in threads:
            regtune.set_num_threads(n)
            if cv2 is not None:
                cv2.setNumThreads(n)
            try:
                import torch

                torch.set_num_threads(n)
            except ImportError:
                pass
            both = _time_all({k: make(name, images) for k, make in impls.items()}, len(images), args.seconds)
            rates = {k: v[0] for k, v in both.items()}
            line = f"{name:<11}{n:>8}" + "".join(f"{rates[k]:>16,.0f}" for k in impls)
            for k in impls:
                if k == "regtune":
                    continue
                ratio = rates["regtune"] / rates[k]
                ok = "" if k != "albumentations" or not target else (" ok" if ratio >= target else f" <{target:g}x")
                if k == "albumentations" and target and ratio < target:
                    failed.append(f"{name} on {n} thread(s): {ratio:.1f}x < {target:g}x")
                line += f"{ratio:>16.1f}x{ok:<3}"
            cpu = {k: v[1] for k, v in both.items()}
            line += "   [" + " ".join(f"{cpu[k]:,.0f}" for k in impls)
            line += "".join(f", {cpu['regtune'] / cpu[k]:.1f}x" for k in impls if k != "regtune") + "]"
            print(line, flush=True)
    if "albumentations" in impls:
        print("\ntargets vs albumentations: (a) >= 5x, (b) >= 3x, (c) >= 5x: " +
              ("all met" if not failed else "; ".join(failed)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

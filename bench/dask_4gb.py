"""A 4 GB float32 tensor made through regtune.dask vs dask.array.random, same chunks.

    python bench/dask_4gb.py                 # 32768 x 32768 float32 (4 GiB), two chunkings
    python bench/dask_4gb.py --n 8192        # a quick run (256 MiB)

Both run on dask's threaded scheduler (one thread per core) and draw standard normals into
float32 chunks: regtune.dask.random.normal against
``dask.array.random.default_rng(seed).standard_normal(..., dtype=float32)`` (NumPy's PCG64 +
ziggurat per chunk). The timed graph makes every chunk and keeps one element of each, so the
4 GB never sit in memory at once and no reduction pass is timed. Times are best-of-``--repeat``
wall times; the machine may be shared, so expect noise of a few percent.

Then the proof of chunk independence: the SHA-256 of the tensor's bytes in C order, streamed
band by band (4096 rows, each band computed from its chunks), for a chunking of whole rows and
one of square blocks (every chunk a column block, made one row segment at a time), and of the
one-machine ``regtune.random.normal`` array when it fits (``--no-single`` skips it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import dask
import dask.array as da
import numpy as np

import regtune
import regtune.dask as rdask

SEED = 2024


def _one_element(b: np.ndarray) -> np.ndarray:
    return b[:1, :1].copy()


def _sink(x: da.Array) -> da.Array:
    """Every chunk made, one element of each kept."""
    return x.map_blocks(_one_element, chunks=tuple((1,) * len(c) for c in x.chunks), dtype=x.dtype)


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _regtune(n: int, chunks) -> da.Array:
    return rdask.random.normal((n, n), seed=SEED, chunks=chunks)


def _dask(n: int, chunks) -> da.Array:
    return da.random.default_rng(SEED).standard_normal((n, n), chunks=chunks, dtype=np.float32)


def _sha256(x: da.Array, band: int) -> str:
    h = hashlib.sha256()
    for r in range(0, x.shape[0], band):
        h.update(np.ascontiguousarray(x[r : r + band].compute()).data)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32768, help="the tensor is n x n float32 (default 32768: 4 GiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-single", action="store_true", help="skip the one-machine array and its hash")
    args = ap.parse_args()
    n = args.n
    band = min(4096, n)
    chunkings = {"rows": (band, n), "blocks": (band, min(4096, n))}
    gib = n * n * 4 / 2**30
    print(f"{n} x {n} float32 = {gib:.2f} GiB; dask {dask.__version__}, threaded scheduler, "
          f"{os.cpu_count()} cores; regtune threads per call: {regtune.get_num_threads()}")
    with dask.config.set(scheduler="threads"):
        for label, chunks in chunkings.items():
            t_rt = _best(lambda: _sink(_regtune(n, chunks)).compute(), args.repeat)
            t_da = _best(lambda: _sink(_dask(n, chunks)).compute(), args.repeat)
            print(f"chunks {label:6} {str(chunks):16}  regtune.dask {t_rt:7.3f} s ({gib / t_rt:5.2f} GiB/s)   "
                  f"dask.array.random {t_da:7.3f} s ({gib / t_da:5.2f} GiB/s)   speed-up {t_da / t_rt:5.2f}x")
        with regtune_threads(1):
            for label, chunks in chunkings.items():
                t_rt = _best(lambda: _sink(_regtune(n, chunks)).compute(), args.repeat)
                print(f"chunks {label:6} regtune.dask with 1 regtune thread per dask thread: {t_rt:7.3f} s")
        hashes = {label: _sha256(_regtune(n, chunks), band) for label, chunks in chunkings.items()}
    for label, digest in hashes.items():
        print(f"sha256 regtune.dask chunks={chunkings[label]}: {digest}")
    if not args.no_single:
        whole = regtune.random.normal((n, n), seed=SEED)
        print(f"sha256 regtune.random.normal, one array:  {hashlib.sha256(whole.data).hexdigest()}")
        del whole
    print("identical bytes across chunkings:", len(set(hashes.values())) == 1)


class regtune_threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.before = regtune.get_num_threads()
        regtune.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        regtune.set_num_threads(self.before)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Rewrite tests/data/known_answers.json from the cases in tests/known_answers.py.

    python tools/make_known_answers.py          # from the repository root, regtune installed

Never run by the tests. Run it only for a deliberate change of a stream (a new transform, a
fixed bug), say so in the changelog, and review the diff: every entry that changes is a stream
that users will see change (README.md, "Stream stability").
"""

from __future__ import annotations

import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import regtune  # noqa: E402
from tests.known_answers import FIRST, compute  # noqa: E402


def main() -> None:
    path = os.path.join(ROOT, "tests", "data", "known_answers.json")
    doc = {
        "_about": (
            "Pinned outputs of regtune's samplers, initializers and dropout masks (tests/known_answers.py "
            "lists the calls; tools/make_known_answers.py writes this file). first_bits: the first "
            f"{FIRST} values' bit patterns; sha256: of the whole output's bytes (C order)."
        ),
        "_generated_with": {
            "regtune": regtune.__version__,
            "numpy": np.__version__,
            "simd": regtune.config()["simd"],
            "libc": " ".join(platform.libc_ver()),
        },
        "cases": compute(),
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(doc['cases'])} cases to {path}")


if __name__ == "__main__":
    main()

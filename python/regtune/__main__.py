"""``python -m regtune``: the ``regtune`` command line (see :mod:`regtune.cli`).

``python -m regtune demo`` shows the configuration, checks the determinism promises and times
a normal draw against NumPy; ``python -m regtune train`` trains an MLP on scikit-learn's digits.
"""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

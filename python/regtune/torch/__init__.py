"""regtune for PyTorch users (the optional extra ``regtune[torch]``; the core never imports torch).

Every regtune function already takes CPU torch tensors where it takes arrays (a zero-copy
NumPy view through DLPack; a ``Parameter`` through ``.detach()``, which shares its memory), and
updates them in place. This package adds what needs torch itself:

- :mod:`regtune.torch.nn`: ``Dropout``, ``AlphaDropout``, ``FeatureAlphaDropout``,
  ``Dropout1d/2d/3d`` modules and their functional forms, torch custom ops (``torch.compile``
  traces them) that save no mask: the backward regenerates it from the forward's Philox key.
- :mod:`regtune.torch.optim`: every regtune optimizer as a ``torch.optim.Optimizer``.
- :mod:`regtune.torch.init`: the ``torch.nn.init`` names on tensors, ``reset_parameters`` of
  whole models and ``materialize`` of meta-device models (running their own init code), each
  parameter keyed by its qualified name.
"""

from __future__ import annotations

from . import init, nn, optim

__all__ = ["init", "nn", "optim"]

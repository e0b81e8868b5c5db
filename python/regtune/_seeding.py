"""Seeds and key domains, in one place.

Every random stream of regtune is Philox4x32-10 under a 64-bit key. ``key_from_seed`` turns what
users pass as ``seed=`` (None, an int in [0, 2**64), a ``numpy.random.SeedSequence``) into that
key. Subsystems that draw from the same user seed but must not draw the same bits derive their
key in a **domain** of their own: ``domain_key(seed, DOMAIN)`` is the first 64 bits of
``SeedSequence(seed, spawn_key=(DOMAIN,))`` (a SeedSequence's own spawn key gets the domain
appended), so the same int given to a sampler, an optimizer's stochastic rounding and an
augmentation pipeline gives three unrelated streams. The domains below are part of the
stream-stability policy: changing one changes every draw of its subsystem.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np

#: regtune.random, init and dropout draw under the seed itself (no domain).
#: Stochastic rounding of 16-bit optimizer steps (regtune.optim, precision="stochastic").
STOCHASTIC_ROUNDING = 0x5352
#: regtune.augment's per-sample choices ("aug\0"): applied to the key (see augment_key).
AUGMENT = 0x61756700

_U64 = 1 << 64
_KINDS = "None, an int, a numpy.random.SeedSequence or a regtune.Generator"


def key_from_seed(seed: Any, kinds: str = _KINDS) -> int:
    """The 64-bit Philox key for an int, a SeedSequence or None (fresh OS entropy); ``kinds``
    says what the caller accepts, for the TypeError."""
    if type(seed) is int and 0 <= seed < _U64:  # the common case, without the ABC checks
        return seed
    if seed is None:
        seed = np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        w = seed.generate_state(2, np.uint32)
        return int(w[0]) | (int(w[1]) << 32)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"seed must be {kinds}, got {type(seed).__name__} {seed!r}")
    s = operator.index(seed)
    if not 0 <= s < _U64:
        raise ValueError(f"seed must be in [0, 2**64), got {s}")
    return s


def domain_key(seed: Any, domain: int) -> int:
    """The key of ``seed`` in ``domain``: ``SeedSequence(seed, spawn_key=(domain,))``'s first 64
    bits for an int seed (a SeedSequence's own spawn key gets ``domain`` appended; None: fresh
    entropy)."""
    key_from_seed(seed, "None, an int or a numpy.random.SeedSequence")  # type and range, named
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, domain), pool_size=seed.pool_size)
    else:
        ss = np.random.SeedSequence(None if seed is None else int(seed), spawn_key=(domain,))
    w = ss.generate_state(2, np.uint32)
    return int(w[0]) | (int(w[1]) << 32)


def augment_key(seed: Any) -> int:
    """regtune.augment's key: ``SeedSequence(entropy=[key & 0xFFFFFFFF, key >> 32],
    spawn_key=(AUGMENT,))``'s first 64 bits, ``key`` the seed's own key (``key_from_seed``), so
    a pipeline never reuses the words regtune.random draws from the same seed."""
    base = key_from_seed(seed)
    w = np.random.SeedSequence(entropy=[base & 0xFFFFFFFF, base >> 32], spawn_key=(AUGMENT,)).generate_state(2, np.uint32)
    return int(w[0]) | (int(w[1]) << 32)

"""Keyed random generators: the one rule by which lenscal turns names into random streams.

A stream is named by its parts, e.g. ``("lenscal-injection", seed, cell, index)``; the key
is the SHA-256 of the parts joined by ``:``. The same parts give the same stream in every
process, on every machine, in any batch or order (never Python's salted ``hash()``, never
a global generator). Streams in use (changing a name changes stored outputs):

- ``lenscal-injection, seed, cell, index``  injection parameters (lenscal.injection.priors)
- ``seed, cell, index``                     Poisson noise of an injection (lenscal.physics.render)
- ``lenscal-mock, seed, stream, key``       mock-survey objects (lenscal.mock)
- ``lenscal-split, seed, nside, pixel``     HEALPix split of a pixel (lenscal.data.splits)
- ``lenscal-grid-host, seed, cell, index``  the host of a grid injection (lenscal.selection)
- ``lenscal-training, purpose, seed, epoch, step``  augmentation, dropout, batch order (lenscal.training)
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def key_bytes(*parts: object) -> bytes:
    """SHA-256 of the parts as text joined by ':'."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def numpy_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by the first 128 bits of the key."""
    return np.random.default_rng(int.from_bytes(key_bytes(*parts)[:16], "big"))


def seed63(*parts: object) -> int:
    """A non-negative 63-bit integer seed from the key (fits torch.manual_seed and int64)."""
    return int.from_bytes(key_bytes(*parts)[:8], "big") >> 1


def torch_generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded by seed63(parts)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed63(*parts))
    return generator


def unit_uniform(*parts: object) -> float:
    """A number in [0, 1) from the first 64 bits of the key."""
    return int.from_bytes(key_bytes(*parts)[:8], "big") / 2.0**64


# --- the streams lenscal uses, by name -------------------------------------------------


def injection_rng(seed: int, cell: str, index: int) -> np.random.Generator:
    """Parameters of injection ``index`` of grid cell ``cell`` in run ``seed``."""
    return numpy_rng("lenscal-injection", seed, cell, index)


def noise_seed(seed: int, *parts: object) -> int:
    """Seed of the Poisson-noise generator of one injection: parts are (cell, index)."""
    return seed63(seed, *parts)


def mock_rng(seed: int, key: int | str, stream: str = "catalog") -> np.random.Generator:
    """Mock-survey object ``key`` (its index or galaxy_id), for one purpose (``stream``)."""
    return numpy_rng("lenscal-mock", seed, stream, key)


def split_uniform(seed: int, nside: int, pixel: int) -> float:
    """The number in [0, 1) that places a HEALPix pixel in a split."""
    return unit_uniform("lenscal-split", seed, nside, pixel)


def grid_host_rng(seed: int, cell: str, index: int) -> np.random.Generator:
    """The host of injection ``index`` of grid cell ``cell`` in run ``seed``."""
    return numpy_rng("lenscal-grid-host", seed, cell, index)


def training_generator(seed: int, purpose: str, epoch: int, step: int = 0) -> torch.Generator:
    """Training randomness (augmentation, dropout, batch order) at (epoch, step), so a resumed
    run repeats an uninterrupted one exactly."""
    return torch_generator("lenscal-training", purpose, seed, epoch, step)

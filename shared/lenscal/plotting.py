"""Plotting helpers shared by every PNG lenscal writes: a headless backend, reproducible
files (no software/date metadata, so the same figure gives the same bytes) and the RGB
stretch used for cutout galleries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` as PNG without metadata, close it, return the path."""
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return Path(path)


def rgb(chw: np.ndarray, softening: float = 0.01) -> np.ndarray:
    """(3, H, W) g, r, z nanomaggies -> (H, W, 3) RGB in [0, 1]: z, r, g as R, G, B with an
    asinh stretch of softening ``softening`` nmgy (NaN shown black)."""
    img = np.nan_to_num(chw[::-1].transpose(1, 2, 0), nan=0.0)
    scaled = np.arcsinh(img / softening) / np.arcsinh(1.0 / softening)
    return np.clip(scaled, 0.0, 1.0)

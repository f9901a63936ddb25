"""The one style of every figure lenscal writes: a headless backend, fonts legible at the
saved size (>= 8 pt), a fixed colour per detection threshold (the same threshold is the same
colour in every figure), badges for what a reader must not mistake for a science result
(a demo preset, a mock survey, a forced FPR threshold), and reproducible files: PNG at
150 dpi with a PDF beside it, neither carrying software or date metadata, so the same
figure gives the same bytes. Also the RGB stretch used for cutout galleries."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast

import numpy as np

DPI = 150
FONT_PT: dict[str, Any] = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
           "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 10}  # fmt: skip
#: Fixed threshold colours (Okabe-Ito, colour-blind safe); unknown labels get a stable pick.
THRESHOLD_COLOURS = {
    "p>=0.3": "#E69F00",
    "p>=0.5": "#0072B2",
    "p>=0.7": "#009E73",
    "p>=0.9": "#CC79A7",
    "fpr=0.01": "#56B4E9",
    "fpr=0.001": "#D55E00",
    "fpr=0.0001": "#000000",
}
_SPARE = ("#999999", "#882255", "#44AA99", "#117733", "#AA4499", "#332288")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), lenscal's fonts set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cast(Any, plt.rcParams).update(FONT_PT)  # (its stubs key rcParams by literal names)
    return plt


def threshold_colour(label: str) -> str:
    """The colour of detection threshold ``label`` (e.g. "p>=0.5", "fpr=0.001") everywhere."""
    key = label.replace(" ", "")
    return THRESHOLD_COLOURS.get(key) or _SPARE[zlib.crc32(key.encode()) % len(_SPARE)]


#: (demo, mock) for every figure saved inside ``figure_marks``: set once by the run that draws.
_MARKS: ContextVar[tuple[bool, bool]] = ContextVar("lenscal_figure_marks", default=(False, False))


@contextmanager
def figure_marks(*, demo: bool, mock: bool) -> Iterator[None]:
    """Every figure ``save_figure`` writes inside this block carries the DEMO and/or MOCK
    badge: a diagnostic or grid run sets it once for all its steps' figures."""
    token = _MARKS.set((demo, mock))
    try:
        yield
    finally:
        _MARKS.reset(token)


def current_marks() -> tuple[bool, bool]:
    """(demo, mock) as ``figure_marks`` set them (reports carry the same badges)."""
    return _MARKS.get()


def badges(fig: Any, *, demo: bool = False, mock: bool = False, forced: Iterable[str] = ()) -> None:
    """Visible marks in the figure's top-right corner: "DEMO" (a demo preset), "MOCK" (mock
    survey data) and "FORCED: <thresholds>" (FPR thresholds set on too few negatives)."""
    marks = [m for m, on in (("DEMO", demo), ("MOCK", mock)) if on]
    forced = sorted(set(forced))
    if forced:
        marks.append("FORCED: " + ", ".join(forced))
    if marks:
        fig.text(
            0.995,
            0.995,
            "  ".join(marks),
            ha="right",
            va="top",
            fontsize=8,
            color="white",
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.3", "fc": "#B3261E", "ec": "none"},
        )


def save_figure(
    fig: Any,
    path: str | Path,
    dpi: int = DPI,
    *,
    demo: bool = False,
    mock: bool = False,
    forced: Iterable[str] = (),
) -> Path:
    """Write ``fig`` as PNG (``dpi``, at least 150) and as PDF beside it, without metadata,
    with its badges (those given and those of the enclosing ``figure_marks``); close it;
    return the PNG's path."""
    path = Path(path)
    marked_demo, marked_mock = _MARKS.get()
    badges(fig, demo=demo or marked_demo, mock=mock or marked_mock, forced=forced)
    fig.savefig(path, dpi=max(dpi, DPI), metadata={"Software": None})
    fig.savefig(path.with_suffix(".pdf"), metadata={"Creator": None, "Producer": None, "CreationDate": None})
    pyplot().close(fig)
    return path


def rgb(chw: np.ndarray, softening: float = 0.01) -> np.ndarray:
    """(3, H, W) g, r, z nanomaggies -> (H, W, 3) RGB in [0, 1]: z, r, g as R, G, B with an
    asinh stretch of softening ``softening`` nmgy (NaN shown black)."""
    img = np.nan_to_num(chw[::-1].transpose(1, 2, 0), nan=0.0)
    scaled = np.arcsinh(img / softening) / np.arcsinh(1.0 / softening)
    return np.clip(scaled, 0.0, 1.0)

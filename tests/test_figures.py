"""The figure style (lenscal.plotting) and the grid figures drawn with it, checked on the
saved files: resolution and PDF beside each PNG, fonts >= 8 pt, one colour per threshold,
badges for demo/mock/forced, titles that say what ran, the difference map's symmetric
data-fitted range and its outlined significant cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lenscal.plotting import THRESHOLD_COLOURS, badges, pyplot, save_figure, threshold_colour


def _cells(values: dict[tuple[float, float], tuple[float, float, float]]) -> pd.DataFrame:
    """A 2x2x1 difference table: (theta, psf) -> (difference, newcombe low, high)."""
    rows = [
        {"theta_e_bin": t, "psf_bin": p, "depth_bin": 23.5, "threshold": "p>=0.5", "difference_b_minus_a": d,
         "newcombe95_low": lo, "newcombe95_high": hi, "no_data": False}
        for (t, p), (d, lo, hi) in values.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _capture_figures(monkeypatch: pytest.MonkeyPatch, module: Any) -> dict[str, Any]:
    """``module``'s save_figure, still saving, but keeping the last figure in the dict."""
    captured: dict[str, Any] = {}
    real_save = module.save_figure

    def keep(fig: Any, path: Path, **marks: Any) -> Path:
        captured["fig"] = fig
        return real_save(fig, path, **marks)  # type: ignore[no-any-return]

    monkeypatch.setattr(module, "save_figure", keep)
    return captured


def test_png_at_150_dpi_with_a_pdf_beside_it_and_no_metadata(tmp_path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    png = save_figure(fig, tmp_path / "f.png")
    assert Image.open(png).size == (600, 450)  # 4 x 3 inches at 150 dpi
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and b"CreationDate" not in pdf.read_bytes()
    assert b"matplotlib" not in png.read_bytes().lower()


def test_fonts_are_at_least_8_points() -> None:
    plt = pyplot()
    for key in ("font.size", "xtick.labelsize", "ytick.labelsize", "legend.fontsize", "axes.labelsize"):
        assert float(plt.rcParams[key]) >= 8, key


def test_one_colour_per_threshold_everywhere() -> None:
    assert threshold_colour("p>=0.5") == THRESHOLD_COLOURS["p>=0.5"] == threshold_colour("p >= 0.5")
    assert len(set(THRESHOLD_COLOURS.values())) == len(THRESHOLD_COLOURS)
    assert threshold_colour("fpr=0.05") == threshold_colour("fpr=0.05")  # stable for unknown labels


def test_badges_say_demo_mock_and_forced() -> None:
    plt = pyplot()
    fig, _ = plt.subplots()
    badges(fig, demo=True, mock=True, forced=["fpr=0.001", "fpr=0.001"])
    texts = [t.get_text() for t in fig.texts]
    assert texts == ["DEMO  MOCK  FORCED: fpr=0.001"]
    fig2, _ = plt.subplots()
    badges(fig2)
    assert not fig2.texts
    plt.close("all")


def test_difference_map_range_is_symmetric_fitted_and_significant_cells_outlined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lenscal.selection import plots

    captured = _capture_figures(monkeypatch, plots)
    cells = _cells({
        (1.0, 1.0): (0.12, 0.02, 0.22),   # excludes 0: outlined
        (1.0, 1.2): (-0.30, -0.50, -0.10),  # excludes 0: outlined
        (1.5, 1.0): (0.05, -0.10, 0.20),
        (1.5, 1.2): (0.0, -0.2, 0.2),
    })  # fmt: skip
    plots.heatmaps(cells, tmp_path / "d.png", "difference_b_minus_a", "p>=0.5", diverging=True)
    fig = captured["fig"]
    image = fig.axes[0].images[0]
    assert image.get_clim() == (-0.30, 0.30)  # max |difference| 0.30, rounded up to 0.05
    outlined = [p for p in fig.axes[0].patches if p.get_linewidth() == pytest.approx(1.6)]
    assert len(outlined) == 2
    texts = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert texts["-0.30*"] == "white" and texts["+0.05"] == "black"  # dark cell light text
    assert all(t.get_fontsize() >= 8 for t in fig.axes[0].texts)
    assert fig.axes[-1].get_ylabel() == "B − A completeness"  # the colour bar says what it measures
    assert "outlined *: paired 95% interval excludes 0" in fig._suptitle.get_text()


def test_heatmap_refuses_a_threshold_the_run_does_not_have(tmp_path: Path) -> None:
    from lenscal.selection.plots import heatmaps

    cells = _cells({(1.0, 1.0): (0.1, 0.0, 0.2)})
    from lenscal.selection.config import GridError

    with pytest.raises(GridError, match=r"p>=0\.9.*p>=0\.5"):
        heatmaps(cells, tmp_path / "x.png", "difference_b_minus_a", "p>=0.9", diverging=True)


def test_titles_say_grid_treatment_and_preset() -> None:
    from lenscal.selection.plots import run_label

    meta = {
        "name": "d05",
        "preset": "demo",
        "mock_hosts": True,
        "definition": {"poisson_gain": 150.0, "preprocess_override": {"clip_range": 20.0}, "psf_scale": 1.0,
                       "prior": {"name": "team_d01_d05"}},
        "thresholds": {"fpr=0.001": {"forced": True}, "fpr=0.0001": {"forced": False}},
    }  # fmt: skip
    label = run_label(json.loads(json.dumps(meta)))
    assert label.title() == (
        "grid d05 · Poisson gain 150 e-/nmgy, preprocessing clip_range=20.0, prior team_d01_d05 · preset demo"
    )
    assert label.demo and label.mock and label.forced == ["fpr=0.001"]
    baseline = run_label({"name": "d05", "definition": {"poisson_gain": None}})
    assert baseline.title() == "grid d05 · no Poisson noise · preset full" and not baseline.demo


def test_training_curve_has_validation_loss_and_the_exported_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lenscal.training import loop

    history = [
        {"epoch": e, "train_loss": 0.7 - 0.1 * e, "val_loss": 0.6 - 0.05 * e, "auc": 0.8 + 0.03 * e,
         "pauc": 0.5}
        for e in (1, 2, 3)
    ]  # fmt: skip
    captured = _capture_figures(monkeypatch, loop)
    loop._plot(history, tmp_path / "curve.png", "demo_resnet", 2, mock=True)
    fig = captured["fig"]
    loss_labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "validation" in loss_labels and "train (augmented)" in loss_labels
    marks = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("exported as best")]
    assert marks and np.allclose(marks[0].get_xdata(), 2)
    assert (tmp_path / "curve.png").is_file() and (tmp_path / "curve.pdf").is_file()
    assert any("MOCK" in t.get_text() for t in fig.texts)


def test_no_figure_asks_for_a_font_under_8_points() -> None:
    import re

    from .conftest import REPO

    small = re.compile(r"\b(?:fontsize|labelsize|size)=([0-7](?:\.\d+)?)\b")
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in (REPO / "shared" / "lenscal").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if small.search(line) and "figsize" not in line
    ]
    assert not found, found

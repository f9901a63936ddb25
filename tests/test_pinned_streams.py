"""Keyed random streams and an injection truth table are the same as when they were pinned
(tests/make_pins.py): moving or refactoring code must not change stored outputs. Random
draws and parameters must match exactly; values that pass through float32 rendering match
to 1e-6 relative (the same bits on one machine; BLAS/FFT may round differently elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .pinned import compute_pins

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_streams.json").read_text())


def test_random_streams_and_drawn_parameters_are_unchanged() -> None:
    now = compute_pins()
    for key in (
        "injection_rng",
        "noise_seed",
        "mock_rng",
        "pixel_uniform",
        "training_generator",
        "sample_params",
        "mock_catalog",
        "truth_columns",
    ):
        assert now[key] == PINNED[key], key


def test_rendered_truth_and_noise_are_unchanged() -> None:
    now = compute_pins()
    for column, values in PINNED["truth_derived"].items():
        np.testing.assert_allclose(now["truth_derived"][column], values, rtol=1e-6, err_msg=column)
    np.testing.assert_allclose(now["noisy_arc_sums"], PINNED["noisy_arc_sums"], rtol=1e-6)

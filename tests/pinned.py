"""The keyed random streams and one injection truth table, computed through the public API
(imports resolve to wherever the code lives now)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def compute_pins() -> dict[str, Any]:
    from lenscal.data.splits import pixel_uniform
    from lenscal.injection import get_prior, inject, sample_params
    from lenscal.mock.catalog import draw_catalog
    from lenscal.physics import RenderSpec
    from lenscal.rng import injection_rng, mock_rng, noise_seed, training_generator

    pins: dict[str, Any] = {}
    pins["injection_rng"] = [injection_rng(7, "c3", i).random(3).tolist() for i in range(3)]
    pins["noise_seed"] = [noise_seed(3, "cell", 5), noise_seed(0, "render", 0), noise_seed(11, 4)]
    pins["mock_rng"] = [
        mock_rng(0, 5).random(2).tolist(),
        mock_rng(0, "mock_0_000001", "noise").normal(size=2).tolist(),
    ]
    pins["pixel_uniform"] = pixel_uniform(np.array([0, 100, 196607]), 42).tolist()
    pins["training_generator"] = torch.rand(3, generator=training_generator(1, "augment", 2, 3)).tolist()
    params = sample_params(get_prior("default"), np.full(4, 1.5), np.full((4, 3), 1.2), seed=7, cell="c3")
    pins["sample_params"] = params.records()
    catalog = draw_catalog(6, seed=0, positive_fraction=0.3)
    pins["mock_catalog"] = {c: catalog[c].tolist() for c in catalog.columns if catalog[c].dtype.kind in "fi"}
    hosts = torch.from_numpy(np.random.default_rng(0).normal(0, 0.01, (4, 3, 101, 101)).astype(np.float32))
    keys = [noise_seed(5, "cellX", i) for i in range(4)]
    result = inject(hosts, params, RenderSpec(poisson_gain=150.0), noise_keys=keys)
    truth = result.truth
    pins["truth_columns"] = sorted(truth.columns)
    pins["truth_derived"] = {
        c: truth[c].astype(float).tolist()
        for c in truth.columns
        if c.startswith(("magnification", "lensed_mag", "arc_snr"))
    }
    pins["noisy_arc_sums"] = result.arcs.double().sum(dim=(-2, -1)).tolist()
    return pins

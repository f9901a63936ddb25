"""Prefect 3 flows (evaluation, diagnostics, grids, training) and their deployment declarations."""

"""Scoring a model on a manifest split and summarising it (E04-eval shape)."""

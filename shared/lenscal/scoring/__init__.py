"""Scoring: inference engines over checkpoint bundles and the cross-request micro-batcher."""

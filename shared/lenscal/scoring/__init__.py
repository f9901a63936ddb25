"""Scoring: the Scorer interface, inference engines, the micro-batcher, the transport-free
core and the in-process Scorer."""

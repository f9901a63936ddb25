"""`make demo`: the product's main job on embedded defaults (no external data)."""

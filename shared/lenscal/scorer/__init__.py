"""lenscal.scorer.v1: gRPC code generated from proto/ by `make proto` (never committed)."""

"""lenscal scorer service: gRPC ``lenscal.scorer.v1.Scorer`` over lenscal.scoring
(`lenscal serve scorer`)."""

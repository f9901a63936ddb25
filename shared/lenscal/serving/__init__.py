"""What every gRPC service shares: the packed-array wire codec, the one mapping from
exceptions to status codes, server plumbing (health, reflection, metrics, shutdown)."""

"""Python code generated from proto/ by proto/generate.py at build time (never committed).

Kept apart from the ``lenscal`` library on purpose: only the gRPC layer (lenscal.rpc) and
the service packages import it."""

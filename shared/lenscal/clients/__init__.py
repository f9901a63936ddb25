"""Python clients for the lenscal gRPC services."""

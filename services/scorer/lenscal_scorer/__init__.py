"""lenscal scorer service: the process entry point and its gRPC/CLI adapter over the lenscal library.

The servicer lands with its issue; the library code it adapts lives in shared/lenscal/."""

"""lenscal injector service: gRPC ``lenscal.injector.v1.Injector`` over lenscal.physics and
lenscal.injection (`lenscal serve injector`)."""

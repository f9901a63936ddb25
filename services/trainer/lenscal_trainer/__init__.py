"""lenscal trainer: training runs as a job (a container or a batch process), not a server.

``python -m lenscal_trainer --config CFG [...]`` is ``lenscal train --config CFG [...]``:
the job's entry point, over lenscal.training."""

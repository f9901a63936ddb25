"""One front door per workflow: a job (typed parameters, validated before any work) and the
function that runs it, called by the ``lenscal`` command and the Prefect flow alike.

Each job module wires a run once: its results directory (lenscal.workspace: lock, restart,
claim, naming), its registry record, and the library runner it drives. A command turns
its options into the job and a ``lenscal.backends.Services``; a flow builds the same job
from its parameters and adds only Prefect concerns (tasks, retries, fan-out, artifacts).
"""

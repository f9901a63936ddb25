"""Start real lenscal service processes on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def running_service(*args: str, timeout_s: float = 90.0) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run `lenscal serve <args> --port 0`; yield ("127.0.0.1:<port>", process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenscal.cli", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + timeout_s
        endpoint = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    raise RuntimeError(f"service exited with {proc.returncode}")
                continue
            match = re.search(r"listening on (\S+:\d+)", line)
            if match:
                endpoint = match.group(1)
                break
        if endpoint is None:
            raise TimeoutError(f"service did not start within {timeout_s} s")
        yield endpoint, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

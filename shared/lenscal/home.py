"""The lenscal home directory (registry database, caches): $LENSCAL_HOME or ~/.lenscal."""

from __future__ import annotations

import os
from pathlib import Path


def lenscal_home() -> Path:
    home = Path(os.environ.get("LENSCAL_HOME", Path.home() / ".lenscal")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home

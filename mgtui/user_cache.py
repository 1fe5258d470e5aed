"""The user's cache directory (XDG_CACHE_HOME, else ~/.cache): where mgtui keeps what it builds or
fetches once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mgtui"

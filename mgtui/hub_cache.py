"""The local Hugging Face hub cache and a quick config fetch, found as huggingface_hub finds them,
without importing it (the form stays light)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, found as huggingface_hub finds it, read again at each call
    (huggingface_hub reads it once, at import: constants.py, HF_HOME and HF_HUB_CACHE): HF_HUB_CACHE,
    else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, with HF_HOME defaulting to
    $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface; "~" and $VARS expanded."""

    def expand(path: str) -> str:
        return os.path.expandvars(os.path.expanduser(path))

    env = os.environ
    home = expand(
        env.get("HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"))
    )
    return Path(expand(env.get("HF_HUB_CACHE", env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub")))))


# huggingface_hub's own rule (utils/_validators.py: REPO_ID_REGEX and validate_repo_id), without
# importing it: a name it would refuse with HFValidationError after the engine has started.
_REPO_ID = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", re.ASCII)


def repo_id_problem(name: str) -> str | None:
    """Why `name` can't be a Hub repository id, in words, or None."""
    if name.count("/") > 1:
        return "a Hub name is org/name: one '/' at most"
    if not _REPO_ID.fullmatch(name):
        return "a Hub name uses letters, digits, '-', '_' and '.', doesn't start or end with '-' or '.', 96 characters at most"
    if "--" in name or ".." in name:
        return "a Hub name can't hold '--' or '..'"
    if name.endswith(".git"):
        return "a Hub name can't end with '.git'"
    return None


def repo_cache_dir(repo_id: str, kind: str = "model") -> Path:
    """Where huggingface_hub caches a repository (kind "model" or "dataset")."""
    return hub_cache_dir() / f"{kind}s--{repo_id.replace('/', '--')}"


def hub_cached(kind: str) -> list[str]:
    """Repo ids of the models (kind "models") or datasets ("datasets") in the local hub cache."""
    try:
        names = os.listdir(hub_cache_dir())
    except OSError:
        return []
    prefix = kind + "--"
    return sorted(n[len(prefix) :].replace("--", "/", 1) for n in names if n.startswith(prefix))


def offline() -> bool:
    """HF_HUB_OFFLINE, read as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_cache_file(repo_id: str, filename: str) -> Path | None:
    """A model's file (its newest snapshot's) in the local Hugging Face cache, without importing huggingface_hub."""
    snaps = repo_cache_dir(repo_id) / "snapshots"
    if not snaps.is_dir():
        return None
    found = sorted(snaps.glob(f"*/{filename}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


def hub_config(repo_id: str, timeout: float = 3.0) -> Path | None:
    """Fetch config.json alone from the Hub within `timeout` seconds; None offline or on any
    failure. huggingface_hub retries for tens of seconds when offline, so it runs in a thread
    that is abandoned at the deadline, after a quick reachability check."""
    if offline() or repo_id.count("/") != 1:
        return None
    import socket
    import threading
    from urllib.parse import urlparse

    host = urlparse(endpoint()).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=min(timeout, 1.5)).close()
    except OSError:
        return None
    result: list[Path] = []

    def fetch() -> None:
        try:
            from huggingface_hub import hf_hub_download

            result.append(Path(hf_hub_download(repo_id, "config.json", etag_timeout=timeout)))
        except Exception:  # gated, missing, network: fall through to the catalog
            pass

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else None

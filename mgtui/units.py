"""Small shared conversions. GPU memory is counted in GiB (2**30 bytes, what nvidia-smi's MiB add up
to) and labelled GB, as GPU spec sheets do."""

from __future__ import annotations

GIB = 1024**3


def gib(n_bytes: float) -> float:
    return n_bytes / GIB


def gib3(n_bytes: float | None) -> float | None:
    """GiB to three places, as the event log and summary.json record them; None stays None."""
    return None if n_bytes is None else round(n_bytes / GIB, 3)


def comma_list(text: str) -> list[str]:
    """ "q_proj, v_proj," -> ["q_proj", "v_proj"]: the items of a comma-separated setting."""
    return [item.strip() for item in text.split(",") if item.strip()]

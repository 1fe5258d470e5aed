"""Common GPUs to plan for by name, with the memory nvidia-smi reports as total (GiB)."""

from __future__ import annotations

import re

# name -> GiB (nvidia-smi's total MiB / 1024, rounded down to 0.1)
COMMON_GPUS: dict[str, float] = {
    "T4 16GB": 15.0,
    "RTX 3060 12GB": 12.0,
    "RTX 4060 Ti 16GB": 16.0,
    "RTX 4070 12GB": 12.0,
    "RTX 4080 16GB": 16.0,
    "V100 16GB": 16.0,
    "V100 32GB": 32.0,
    "L4 24GB": 22.4,
    "A10G 24GB": 22.4,
    "RTX 3090 24GB": 24.0,
    "RTX 4090 24GB": 24.0,
    "RTX 5090 32GB": 31.8,
    "A40 48GB": 44.9,
    "L40S 48GB": 44.9,
    "RTX A6000 48GB": 47.9,
    "RTX 6000 Ada 48GB": 47.9,
    "A100 40GB": 39.4,
    "A100 80GB": 79.1,
    "H100 80GB": 79.6,
    "H200 141GB": 139.8,
    "B200 180GB": 178.4,
}


def find_gpu(name: str) -> tuple[str, float] | None:
    """Match a loose name ('4090', 'a100-80', 'H100') to the list."""
    want = re.sub(r"[^a-z0-9]", "", name.lower())
    for label, gib in COMMON_GPUS.items():
        key = re.sub(r"[^a-z0-9]", "", label.lower())
        if want and (key == want or key.startswith(want) or want in key):
            return label, gib
    return None

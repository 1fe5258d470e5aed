"""What a snippet imports of the training stack, run in a fresh interpreter (through sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "unsloth", "unsloth_zoo", "accelerate", "bitsandbytes")


def heavy_after(code: str) -> list[str]:
    """The training stack's modules loaded once `code` has run; [] when it stays light."""
    probe = (
        code
        + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])

#!/usr/bin/env bash
# Builds .gpu-kit for the lent GPU machine: ../shared/gpu/build-kit, then puts back unsloth_zoo/mlx,
# which build-kit trims but unsloth_zoo (2026.10.7) imports at start (unsloth_zoo/__init__.py:
# `from unsloth_zoo.mlx.runtime import is_mlx_available`); without it Unsloth fails to import.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
"$root/../shared/gpu/build-kit"
zoo=$(python3 -c "import tomllib; print(next(p['version'] for p in tomllib.load(open('$root/uv.lock','rb'))['package'] if p['name']=='unsloth-zoo'))")
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "unsloth-zoo==$zoo"
python3 - "$tmp" "$root/.gpu-kit/site" <<'PY'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
for n in z.namelist():
    if n.startswith("unsloth_zoo/mlx/"):
        z.extract(n, sys.argv[2])
PY
rm -rf "$tmp"
test -f "$root/.gpu-kit/site/unsloth_zoo/mlx/runtime.py" && echo "kit ready: $(du -sh "$root/.gpu-kit" | cut -f1)"

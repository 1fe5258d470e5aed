#!/usr/bin/env bash
# One call on the lent GPU machine (../shared/gpu/README.md): the environment, Unsloth's import,
# then the proof, with NVML and nvidia-smi sampled side by side while it trains.
# Usage there, with carry [".gpu-kit"]:  bash benchmarks/gpu_session.sh BUDGET_S [proof flags...]
set -u
budget=${1:-420}; shift || true
: "${OUT:?OUT must name the folder that comes back}"
export PYTHONPATH=$PWD/.gpu-kit/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
t0=$(date +%s)
{
  nvidia-smi; python3 -V
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_arch_list())"
  for c in gcc cc clang nvcc; do printf '%s: %s\n' "$c" "$(command -v $c)"; done
  df -h . /tmp; nproc; free -g
} > "$OUT/env.txt" 2>&1
{ time timeout 150 python3 -c "import unsloth, trl, peft, bitsandbytes; print('unsloth', unsloth.__version__)"; } > "$OUT/import.txt" 2>&1
spent=$(( $(date +%s) - t0 ))
python3 benchmarks/nvml_vs_smi.py --out "$OUT/nvml_vs_smi.jsonl" --seconds "$budget" --stop-file "$OUT/.stop" &
python3 benchmarks/gpu_proof.py --budget-s $(( budget - spent )) --out "$OUT" --work /tmp/proof-work "$@" > "$OUT/proof.log" 2>&1
touch "$OUT/.stop"; wait
python3 benchmarks/nvml_vs_smi.py --out "$OUT/nvml_vs_smi.jsonl" --summary > "$OUT/nvml_vs_smi.summary.json" 2>&1
rm -f "$OUT/.stop"
# Few files come back from the lent machine: the runs' records travel as one archive.
[ -d "$OUT/runs" ] && tar czf "$OUT/runs.tgz" -C "$OUT" runs && rm -rf "$OUT/runs"
tail -c 3000 "$OUT/import.txt"; tail -n 40 "$OUT/proof.log"; cat "$OUT/nvml_vs_smi.summary.json"

#!/usr/bin/env bash
# The paper's dVAE-Adv preset on one GPU, TF32 then bf16: step time, peak memory, MFU and the Memcode
# health figures (argmax perplexity, max probability, KL, sample/argmax agreement per head, gradient
# ratio at the decoder output), a few hundred steps each, on clips of ../shared/media.
# The global batch is the paper's 16 clips of 30 frames, MICRO clips at a time (gradient accumulation).
#
#   bash benchmarks/gpu_dvae.sh                      # STEPS=300 MICRO=1 OUT=gpu-dvae
#   STEPS=100 MICRO=4 OUT=$OUT bash benchmarks/gpu_dvae.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
MICRO=${MICRO:-1}
OUT=${OUT:-gpu-dvae}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for precision in tf32 bf16; do
  PYTHONPATH=. python benchmarks/bench_dvae_gpu.py --preset paper --precision "$precision" \
    --steps "$STEPS" --micro "$MICRO" --out "$OUT/$precision.json" 2>&1 | tee "$OUT/$precision.log"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("precision  step (s)  clips/s  TFLOP/step  MFU     peak GiB  argmax perplexity (last, mean of heads)")
for p in ("tf32", "bf16"):
    r = json.loads((out / f"{p}.json").read_text())
    last = r["health"][-1] if r["health"] else {}
    print(f"{p:<10} {r['step_time_s_median']:8.3f}  {r['clips_per_s']:7.2f}  {r['tflop_per_step']:10.2f}  "
          f"{(r['mfu'] or 0):6.1%}  {r['peak_memory_gib'] or 0:8.1f}  {last.get('memcodes/argmax_perplexity_mean', float('nan')):.2f}")
PY

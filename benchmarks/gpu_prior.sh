#!/usr/bin/env bash
# The paper priors on one GPU (issue 11, "Must show" 5): training steps/s and peak memory at the
# paper's batch of 64 clips x 32 frames (Table 3 trains it over 8 GPUs: per-GPU batch 8 is the
# comparable figure), then generation frames/s against Table 3 (FAR 38.9, MAR 0.77 frames/s).
# Run from the repository root on a CUDA machine: bash benchmarks/gpu_prior.sh 2>&1 | tee gpu_prior.log
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total --format=csv
python - <<'PY'
import torch
torch.backends.cuda.matmul.allow_tf32 = True  # the paper trains in TF32 (C.2.2)
torch.backends.cudnn.allow_tf32 = True
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY
for batch in 8 64; do
  # Steps/s of forward + backward + Adam on random Memcodes of the paper grid; peak memory after.
  NVIDIA_TF32_OVERRIDE=1 python benchmarks/bench_prior.py --preset paper --device cuda --batch "$batch" \
    --frames 32 --steps 20 || echo "batch $batch: did not fit or failed (see above)"
done
# Generation speed with the cached incremental steps, single sample (Table 3's inference column).
python benchmarks/bench_generate.py --preset paper --device cuda --far-frames 120 --mar-frames 4 --no-uncached

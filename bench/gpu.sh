#!/usr/bin/env bash
# GPU benchmark, one short prepared run (< 8 minutes on one NVIDIA GPU):
#   bash bench/gpu.sh
# Train images/s per backbone at 224 px, float32 vs mixed precision, XLA off/on, and how much
# of each step waits for the input pipeline (bench/gpu.py has the details). Writes markdown to
# stdout and, when $OUT is set, gpu.md / gpu.json / nvidia-smi.txt there. Needs the CUDA build
# of TensorFlow (`pip install -e '.[gpu]'`); uses $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
OUT_DIR=${OUT:-}
if [ -n "$OUT_DIR" ]; then mkdir -p "$OUT_DIR"; fi

{
  echo "## gpu: train images/s at 224 px ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- machine: $(nproc) cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  echo "- gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
  echo "- command: \`bash bench/gpu.sh\`"
  echo
} | tee ${OUT_DIR:+"$OUT_DIR/gpu.md"}

# gpu.py starts no setting that would end after its deadline (it knows the longest so far);
# the hard timeout only guards against a hang. Total stays under 8 minutes.
set +e
timeout 470 "$PY" bench/gpu.py --deadline 430 ${OUT_DIR:+--out "$OUT_DIR"} \
  | tee -a ${OUT_DIR:+"$OUT_DIR/gpu.md"}
status=${PIPESTATUS[0]}
set -e
if [ -n "$OUT_DIR" ]; then nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true; fi
exit "$status"

#!/usr/bin/env bash
# One prepared session on a lent GPU machine (issue 28 item 4), within $BUDGET s (300):
#   BUDGET=300 bash bench/gpu_session.sh    with runs/gpu-carry (bench/gpu_carry.py) carried
# The machine has PyTorch and JAX (CUDA) in its python3, no TensorFlow, no package index. The
# checks run in priority order, each under its own `timeout` cut to what is left of $BUDGET
# (a check that cannot get its minimum is skipped, and says so); a failed check does not stop
# the next. Each writes one file under $OUT (default runs/gpu-session/), summary.md one line
# per check: at most 8 files, the device tool's limit. MAIN is jax, or torch if Keras cannot
# train on the GPU with JAX there (setup tries both).
#   setup.md           install of the carried wheels (pip --target, offline), their needs
#                      against the machine's packages, nvidia-smi, one compiled Keras fit on
#                      the GPU per backend through search.train.device
#   bench.md           (i) bench/gpu.py --backend MAIN on the carried images at 224 px: mixed
#   gpu-MAIN.json          precision vs float32 per backbone, busy share (target >= 85%)
#   search.md          (ii) search run --backend MAIN on the carried rows, spaces/hvc-gpu.yaml,
#                      --gpus all --test-fraction 0.2, then best --register gpu, predict
#   workers.md         (iii) --workers 2 --gpus all: two processes sharing the GPU
#   quickstart-MAIN.md (iv) the README's quick start (search run --trials 10)
#   quickstart-torch.md (v) the same on PyTorch, if MAIN is jax and time is left
# State goes to $WORK (default /tmp/gpu-session), wiped at the start: the script can simply
# run again. Knobs (environment): BUDGET (300 s), PYTHON (python3), CARRY (runs/gpu-carry),
# SITE (where the wheels go, /tmp/gpu-site), BENCH_S (60), SEARCH_TIMEOUT (75: (ii)'s search run
# --timeout), WORKERS_TIMEOUT (45), BENCH_ARGS (more bench/gpu.py flags; a CPU dry run passes
# --allow-cpu --size 32 ...), JAX_PLATFORMS (cpu: a dry run here, no GPU required).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
START=$(date +%s)
BUDGET=${BUDGET:-300}
PY=${PYTHON:-python3}
CARRY=$(cd "${CARRY:-runs/gpu-carry}" 2>/dev/null && pwd) || {
  echo "gpu_session: ${CARRY:-runs/gpu-carry} not found: run bench/gpu_carry.py and carry it"
  exit 2
}
SITE=${SITE:-/tmp/gpu-site}
WORK=${WORK:-/tmp/gpu-session}
OUT_DIR=${OUT:-$REPO/runs/gpu-session}
BENCH_S=${BENCH_S:-60}
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-75}
WORKERS_TIMEOUT=${WORKERS_TIMEOUT:-45}
BENCH_ARGS=${BENCH_ARGS:-}
DATA=$CARRY/hvc/hvc_annotations.csv
MAIN=  # the backend of checks (i)-(iv): jax, else torch if Keras fails on JAX (setup decides)
OTHER=  # the other one, for (v), if it works too
WORKS=()
rm -rf "$WORK" && mkdir -p "$WORK/bin" "$OUT_DIR"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
export GIT_PYTHON_REFRESH=quiet  # GitPython (MLflow's) stays quiet where git is missing
export SEARCH_WEIGHTS_DIR=$CARRY/weights SEARCH_RUNS_DIR=$WORK/runs
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
printf '#!/bin/sh\nexec "%s" -m search.cli "$@"\n' "$(command -v "$PY")" > "$WORK/bin/search"
chmod +x "$WORK/bin/search"
export PATH="$WORK/bin:$PATH"

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - 15 - $(elapsed) )); }  # 15 s: a timed-out command's kill grace
SUMMARY=()
note() { SUMMARY+=("$1"); echo "== $1"; }

# run_for FILE SECONDS CMD...: CMD under a timeout (SIGINT first: search marks its trial FAILED
# and exits), its output appended to FILE inside a fenced block; returns CMD's status. CMD runs
# in a session of its own, whose leftovers are killed after it (by that session's id): search's
# worker processes lead their own process groups and would outlive a killed launcher.
run_for() {
  local file=$1 secs=$2; shift 2
  local began=$(date +%s) rc pid
  { echo; echo "\$ $*   (timeout ${secs} s)"; echo '```'; } >> "$file"
  if command -v setsid >/dev/null && command -v pkill >/dev/null; then
    setsid timeout -s INT -k 15 "$secs" "$@" >> "$file" 2>&1 <&0 &
    pid=$!
    wait "$pid"
    rc=$?
    pkill -KILL -s "$pid" 2>/dev/null
  else
    timeout -s INT -k 15 "$secs" "$@" >> "$file" 2>&1
    rc=$?
  fi
  { echo '```'; echo "exit $rc after $(( $(date +%s) - began )) s"; } >> "$file"
  return $rc
}

# gpu_samples FILE: GPU use and its processes every 5 s, in the background (stop: kill $!).
gpu_samples() {
  command -v nvidia-smi >/dev/null || return 0
  while sleep 5; do
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | sed 's/^/  app /'
  done > "$1" 2>&1 &
  SAMPLER=$!
}
stop_samples() {  # FILE: append the samples to the check's file
  [ -n "${SAMPLER:-}" ] || return 0
  kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=
  { echo; echo "GPU samples (timestamp, utilization, memory; processes):"; echo '```';
    cat "$1"; echo '```'; } >> "$2"
}

# check NAME MIN_SECONDS FUNCTION: run FUNCTION if at least MIN_SECONDS are left.
check() {
  local name=$1 least=$2 fn=$3 began rc
  if (( $(left) < least )); then
    note "$name: skipped for time ($(left) s left of $BUDGET, needs $least)"; return
  fi
  began=$(date +%s)
  $fn; rc=$?
  local verdict=ok
  [ "$rc" = 0 ] || verdict="FAILED (exit $rc)"
  note "$name: $verdict in $(( $(date +%s) - began )) s${DETAIL:+; $DETAIL}"
  DETAIL=
}

setup() {
  local f=$OUT_DIR/setup.md
  { echo "# setup ($(date -u '+%Y-%m-%d %H:%M UTC'))"; echo;
    echo "- python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')";
    echo "- cores: $(nproc); carried: $(du -sh "$CARRY" | cut -f1) in $CARRY"; } > "$f"
  command -v nvidia-smi >/dev/null && run_for "$f" 20 nvidia-smi
  run_for "$f" 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$CARRY"/wheels/*.whl || return 1
  # what the carried wheels need, against what is installed (the machine's own packages)
  run_for "$f" 30 "$PY" - "$SITE" <<'EOF' || return 1
import sys
from importlib import metadata
from packaging.requirements import Requirement
carried = {d.metadata["Name"]: d.version for d in metadata.distributions(path=[sys.argv[1]])}
unmet = []
for d in metadata.distributions(path=[sys.argv[1]]):
    for line in d.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{d.metadata['Name']} needs {req} (here: {have or 'missing'})")
print(f"{len(carried)} carried:", ", ".join(f"{k} {v}" for k, v in sorted(carried.items())))
for name in ("numpy", "jax", "jaxlib", "torch", "pandas", "pillow", "h5py", "protobuf",
             "packaging", "pyyaml", "rich", "ml-dtypes", "narwhals", "requests", "click"):
    try:
        print(f"  machine's {name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"  machine's {name}: missing")
print("unmet needs:", "none" if not unmet else "\n  " + "\n  ".join(unmet))
EOF
  # Keras on each backend: one compiled fit on the GPU, through search's own device set-up.
  # The first that works runs checks (i)-(iv) (JAX unless it fails here), the other (v).
  local b
  for b in jax torch; do
    if run_for "$f" 90 "$PY" - "$b" <<'EOF'; then MAIN=${MAIN:-$b}; WORKS+=("$b"); fi
import os, sys
from search import backend
backend.select(sys.argv[1])
import keras, numpy as np, optuna, mlflow, plotly, sqlalchemy
import search.cli  # noqa: F401  (every module `search run` loads first)
from search.train import device
choice = device.choose()
print(f"keras {keras.__version__} on {keras.backend.backend()} | optuna {optuna.__version__} | "
      f"mlflow {mlflow.__version__} | plotly {plotly.__version__} | {choice}")
if not choice.gpus and os.environ.get("JAX_PLATFORMS") != "cpu":
    sys.exit(f"{sys.argv[1]}: no GPU visible")
m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])
m.compile("adam", "mse", jit_compile=choice.jit_compile)
m.fit(np.ones((64, 8), "float32"), np.ones((64, 2), "float32"), verbose=0, epochs=2)
print("one compiled fit: ok")
EOF
  done
  [ "${#WORKS[@]}" -gt 1 ] && OTHER=${WORKS[1]}
  DETAIL="$(grep -m1 '^unmet needs' "$f"); Keras trains with: ${WORKS[*]:-neither jax nor torch}"
  [ -n "$MAIN" ]
}

bench() {
  local f=$OUT_DIR/bench.md secs=$(( $(left) < BENCH_S ? $(left) : BENCH_S ))
  echo "# (i) bench/gpu.py --backend $MAIN ($(date -u '+%H:%M UTC'))" > "$f"
  # shellcheck disable=SC2086
  run_for "$f" "$secs" "$PY" bench/gpu.py --backend "$MAIN" --data "$DATA" \
    --deadline $(( secs - 15 )) --out "$OUT_DIR" $BENCH_ARGS
  local rc=$?
  DETAIL=$(grep -E '^(Input|Skipped)' "$f" | tr '\n' ' ')
  return $rc
}

search_main() {
  local f=$OUT_DIR/search.md rc samples=$WORK/search-gpu.txt
  echo "# (ii) search on $MAIN, spaces/hvc-gpu.yaml, $(( $(wc -l < "$DATA") - 1 )) rows" \
    "($(date -u '+%H:%M UTC'))" > "$f"
  gpu_samples "$samples"
  run_for "$f" $(( SEARCH_TIMEOUT + 60 < $(left) ? SEARCH_TIMEOUT + 60 : $(left) )) \
    search run --backend "$MAIN" --data "$DATA" --space spaces/hvc-gpu.yaml --study gpu \
    --gpus all --timeout "$SEARCH_TIMEOUT" --trials 200 --test-fraction 0.2 --no-progress
  rc=$?
  stop_samples "$samples" "$f"
  DETAIL=$(grep -m1 -E '^best trial' "$f")
  (( $(left) > 20 )) || return $rc
  run_for "$f" $(( $(left) < 60 ? $(left) : 60 )) search best --backend "$MAIN" --study gpu \
    --register gpu || return 1
  local images; images=$(ls "$CARRY"/hvc/resized/*.jpg | head -5)
  # shellcheck disable=SC2086
  run_for "$f" $(( $(left) < 60 ? $(left) : 60 )) search predict --backend "$MAIN" \
    --model models:/gpu@champion $images || return 1
  return $rc
}

workers() {
  local f=$OUT_DIR/workers.md rc samples=$WORK/workers-gpu.txt
  echo "# (iii) two worker processes sharing the GPU ($(date -u '+%H:%M UTC'))" > "$f"
  gpu_samples "$samples"
  run_for "$f" $(( WORKERS_TIMEOUT + 60 < $(left) ? WORKERS_TIMEOUT + 60 : $(left) )) \
    search run --backend "$MAIN" --data "$DATA" --space spaces/hvc-gpu.yaml --study gpu-workers \
    --workers 2 --gpus all --timeout "$WORKERS_TIMEOUT" --trials 200 --test-fraction 0.2 \
    --no-progress
  rc=$?
  stop_samples "$samples" "$f"
  DETAIL="$(grep -c '^trial [0-9]*' "$f") trial lines; $(grep -m1 -E '^best trial' "$f")"
  return $rc
}

quickstart() {  # BACKEND
  local f=$OUT_DIR/quickstart-$1.md
  echo "# quick start on $1: search run --trials 10 in an empty folder" \
    "($(date -u '+%H:%M UTC'))" > "$f"
  mkdir -p "$WORK/qs-$1"
  (cd "$WORK/qs-$1" && export SEARCH_RUNS_DIR=$WORK/qs-$1/runs && run_for "$f" \
    $(( $(left) < 150 ? $(left) : 150 )) search run --backend "$1" --trials 10 --no-progress)
  local rc=$?
  DETAIL="$(grep -c '^trial [0-9]*' "$f") trial lines; $(grep -m1 -E '^best trial' "$f")"
  return $rc
}
quickstart_main() { quickstart "$MAIN"; }
quickstart_other() { quickstart "$OTHER"; }

check "setup: carried wheels, imports, Keras on the GPU" 30 setup
if [ -n "$MAIN" ]; then
  check "(i) throughput per backbone, $MAIN" 45 bench
  check "(ii) search + best --register + predict, $MAIN" 60 search_main
  check "(iii) --workers 2 on one GPU, $MAIN" 60 workers
  check "(iv) quick start, $MAIN" 45 quickstart_main
  if [ -n "$OTHER" ]; then check "(v) quick start, $OTHER" 45 quickstart_other; fi
else
  note "(i)-(v) not run: Keras ran on neither JAX nor PyTorch here (setup.md says why)"
fi

{ echo "# gpu_session summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(elapsed) s of $BUDGET)"; echo
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        2>/dev/null || echo 'no nvidia-smi')
  echo "- machine: $(nproc) cores; $gpu"
  echo "- command: \`BUDGET=$BUDGET bash bench/gpu_session.sh\`"
  echo; for line in "${SUMMARY[@]}"; do echo "- $line"; done
  if [ -f "$OUT_DIR/bench.md" ]; then echo; grep '^|' "$OUT_DIR/bench.md"; fi
} > "$OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md"

#!/usr/bin/env bash
# The GPU figures of README's table, in one prepared run of at most ~8 minutes on a machine with one CUDA GPU and
# many cores (the lent H200 with 16 cores), from the repository's root:
#
#     OUT=/tmp/gpu bash benchmarks/gpu.sh        # PYTHON=... to use another interpreter (default: python3)
#
# 1. training steps/s on ALE Pong, the learner on the GPU (--device cuda, one learner thread) and one actor process
#    per remaining core: the baseline (84x84) and the TimeSformer (42x42), --preset pong, SECONDS of training each;
#    steady steps/s from metrics.csv (the updates after the first fifth of the run);
# 2. benchmarks/analysis_devices.py: saliency and ATOM frames/s on the GPU against all cores of the CPU, with the
#    largest difference of the maps;
# 3. `interp analyse` of the TimeSformer's run from step 1 (its checkpoints, a 30-frame evaluation set) with
#    --device cuda and with --device cpu, each timed, and benchmarks/compare_analyses.py on their tables.
#
# Every step has its own time limit, so one that hangs cannot take the others' time; the logs and tables go to OUT.
# SECTIONS="2 3" runs only those; RUN=DIR analyses that run (its checkpoints) in section 3 instead of step 1's.
# The evaluation stage is left out of section 3: a barely trained agent's Pong episodes take minutes to end.
set -uo pipefail
OUT=${OUT:-/tmp/gpu}
PY=${PYTHON:-python3}
SECONDS_EACH=${SECONDS_EACH:-60}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the script on a machine without a GPU
SECTIONS=${SECTIONS:-1 2 3}
STAGES=${STAGES:-maps,atom,agreement,sanity}
LIMIT=${LIMIT:-120}  # seconds for each of section 2 and of section 3's two analyses
FRAMES=${FRAMES:-16}  # frames of section 2
CORES=$(nproc)
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
interp() { "$PY" -m cli "$@"; }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
echo "cores: $CORES"

section() { [[ " $SECTIONS " == *" $1 "* ]]; }

section 1 && echo "== 1. training on ALE Pong, learner on $DEVICE, $((CORES - 1)) actors, ${SECONDS_EACH} s each"
train() {  # NAME ARCH FRAME_SIZE
    timeout -s INT -k 30 "$SECONDS_EACH" "$PY" -m cli train --arch "$2" --preset pong --frame-size "$3" \
        --device "$DEVICE" --learner-threads 1 --actors $((CORES - 1)) --steps 100000000 \
        --first-checkpoint 10000 --checkpoint-every 100000 --out "$WORK/$1" > "$OUT/train_$1.log" 2>&1
    cp "$WORK/$1/metrics.csv" "$OUT/metrics_$1.csv"
    "$PY" - "$WORK/$1/metrics.csv" "$1" <<'EOF'
import sys
import pandas as pd
rows = pd.read_csv(sys.argv[1])
steady = rows[rows.wall_time >= rows.wall_time.max() / 5]
rate = (steady.step.iloc[-1] - steady.step.iloc[0]) / (steady.wall_time.iloc[-1] - steady.wall_time.iloc[0])
print(f"{sys.argv[2]}: {rows.step.iloc[-1]:,} steps in {rows.wall_time.iloc[-1]:.0f} s; steady {rate:.0f} steps/s")
EOF
}
if section 1; then
    train baseline baseline 84
    train timesformer timesformer_divided 42
fi

if section 2; then
    echo "== 2. saliency and ATOM throughput, $DEVICE against the CPU ($CORES threads)"
    timeout "$LIMIT" "$PY" benchmarks/analysis_devices.py --devices "cpu,$DEVICE" --threads "$CORES" --frames "$FRAMES" \
        2>&1 | grep -v "A.L.E\|Stella\|Warning\|pkg_resources\|\"\"\"" | tee "$OUT/analysis_devices.txt"
fi

section 3 || exit 0
RUN=${RUN:-$WORK/timesformer}
RUN=$(cd "$RUN" && pwd)
echo "== 3. interp analyse of $(basename "$RUN") ($STAGES) on $DEVICE and on the CPU ($CORES workers)"
for device in "$DEVICE" cpu; do
    folder=$RUN/analysis_first; evalset=()
    if [ -d "$folder" ]; then folder=$RUN/analysis_cpu; evalset=(--evalset "$RUN/analysis_first/evalset.npz"); fi
    start=$(date +%s%N)
    timeout "$LIMIT" "$PY" -m cli analyse "$RUN" --out "$folder" --device "$device" --stages "$STAGES" \
        --frames 30 "${evalset[@]}" > "$OUT/analyse_$(basename "$folder").log" 2>&1
    status=$?
    echo "analyse --device $device: exit $status, $(( ($(date +%s%N) - start) / 1000000 )) ms;" \
         "$(tail -1 "$OUT/analyse_$(basename "$folder").log")"
done
echo "checkpoints analysed: $(ls "$RUN/checkpoints" | wc -l)"
"$PY" benchmarks/compare_analyses.py "$RUN/analysis_first" "$RUN/analysis_cpu" | tee "$OUT/compare.txt"
tar -C "$RUN" --exclude cache -czf "$OUT/analyses.tgz" analysis_first analysis_cpu
rm -rf "$WORK" "$RUN/analysis_first" "$RUN/analysis_cpu"

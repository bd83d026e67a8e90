#!/bin/bash
# Issue 5: step times at the ENAS paper presets' sizes (random data) -> GPU-hour estimates.
# Run on a GPU machine from the repo root: bash benchmarks/nas_paper_sizes.sh (OUT=dir for the JSON lines).
# The first line installs carried wheels (.whl/, e.g. ml_collections) where the image lacks them.
# TINY=1 runs the same commands at toy sizes (for checking the script on a CPU).
set -u
T0=$(date +%s)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import jax; print(jax.__version__, jax.devices())"
L=${OUT:-/tmp}/nas_gpu.jsonl
B="python3 -m benchmarks.nas_throughput --selects switch --max_pool window --skip_controller --channels 3"
R="python3 -m benchmarks.nas_rnn_throughput --repeats 3"
if [ "${TINY:-0}" = 1 ]; then
  S="--image_size 8 --steps 2"; MS="--layers 1 --width 4 --batch 8"; MA="--layers 2 --width 4 --batch 8"
  MF="--layers 1 --width 4 --batch 8"; AF="--layers 2 --width 8 --batch 8"
  RS="--hidden 16 --batch 4 --seconds 1"; RF="--hidden 16 --batch 8 --seconds 1"; TO=60
else
  S="--image_size 32 --steps 20"; MS="--layers 6 --cells 5 --width 20 --batch 160"
  MA="--layers 12 --width 36 --batch 128"; MF="--layers 15 --cells 5 --width 36 --batch 144"
  AF="--layers 12 --width 96 --batch 128"; RS="--hidden 720 --batch 20 --seconds 3"
  RF="--hidden 748 --batch 64 --seconds 3 --nobatch_norm"; TO=1
fi
run() { local t=$1; shift; echo "== $(( $(date +%s) - T0 )) s: $*"; timeout $t "$@" | tee -a $L; }
run $((190*TO)) $B --space micro $MS $S --archs 1           # micro search: supernet vs child, forward
run $((120*TO)) $B --space macro $MA $S            # macro search
run $((90*TO)) $B --space micro $MF $S --selects none --archs 1   # micro final child
run $((60*TO)) $B --space macro $AF $S --selects none --archs 1   # macro final child
run $((55*TO)) $R $RS                              # PTB search (supernet, batch norm) vs child
run $((55*TO)) $R $RF                              # PTB final sizes
echo "all done after $(( $(date +%s) - T0 )) s"

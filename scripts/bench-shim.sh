#!/usr/bin/env bash
# What the shim adds to the hot path: a cuMemAlloc_v2 + cuMemFree_v2 pair and a cuMemGetInfo_v2,
# with 1, 8 and 64 processes of one environment at once, against the same driver without the
# shim. Two drivers:
#   null - a driver that does nothing (shim/benches/null_cuda.c): the difference is the shim's
#          own cost (reservation in the shared ledger, pointer bookkeeping, device lookup);
#   sim  - the simulated driver (tests/sim/cuda), for scale: its own bookkeeping is much slower.
# Times are CPU time per operation in each process (median over the processes), so processes
# sharing few cores do not count each other's time.
# Usage: scripts/bench-shim.sh [iterations]   (CARGO_TARGET_DIR is honoured)
#   BASE_SHIM=/path/to/another/libgenv_shim.so adds its figures as a column (an earlier build,
#   measured in the same run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
iters=${1:-200000}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p genv-shim -p genv-cli -p genv-sim-nvml -p genv-sim-cuda
rel=$target/release
work=$(mktemp -d /tmp/genv-bench.XXXXXX)
trap '[ -s "$work/holder" ] && kill "$(cat "$work/holder")" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/sim" "$work/null"
cp "$rel/libcuda.so" "$work/sim/libcuda.so.1"
cp "$rel/libnvidia_ml.so" "$work/sim/libnvidia-ml.so.1"
cc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$work/null/libcuda.so.1" shim/benches/null_cuda.c
cc -O2 -o "$work/bench" shim/benches/shim_bench.c -ldl
export GENV_TMPDIR=$work/genv GENV_SIM_DIR=$work/simdir GENV_SIM_GPUS=1
export LD_LIBRARY_PATH=$work/sim
export NULL_CUDA_UUID=$("$rel/genv" devices --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uuid"])')

# run DRIVER_DIR PROCS [shim]: median pair_ns and info_ns over PROCS concurrent processes.
run() {
    local dir=$1 procs=$2 shim=${3:-} i lib
    local out=$work/out.$RANDOM
    mkdir -p "$out"
    for ((i = 0; i < procs; i++)); do
        if [ -n "$shim" ]; then
            lib=$rel/libgenv_shim.so
            [ "$shim" = base ] && lib=$BASE_SHIM
            LD_LIBRARY_PATH=$dir LD_PRELOAD=$lib GENV_ENVIRONMENT_ID=bench \
                "$work/bench" "$iters" >"$out/$i" &
        else
            LD_LIBRARY_PATH=$dir "$work/bench" "$iters" >"$out/$i" &
        fi
    done
    wait
    python3 - "$out" <<'PY'
import os, statistics, sys
d = sys.argv[1]
vals = {"pair_ns": [], "info_ns": []}
for f in os.listdir(d):
    for line in open(os.path.join(d, f)):
        k, v = line.split()
        vals[k].append(float(v))
print(f'{statistics.median(vals["pair_ns"]):.1f} {statistics.median(vals["info_ns"]):.1f}')
PY
}

# The environment: one GPU, 64 GiB (64 processes x 1 MiB in flight fit easily).
# It lives as long as a sleep whose pid we keep (and whose output goes nowhere, so that a pipe
# reading this script's output is not held open).
"$rel/genv" exec --index 0 --gpu-memory 64gi -- sh -c "echo \$\$ >'$work/holder'; exec sleep 86400" \
    >/dev/null 2>&1 &
for _ in $(seq 100); do
    "$rel/genv" envs --json | grep -q '"eid"' && break
    sleep 0.1
done
eid=$("$rel/genv" envs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["eid"])')
# The bench processes join that environment by id.
sed_eid() { sed "s/GENV_ENVIRONMENT_ID=bench/GENV_ENVIRONMENT_ID=$eid/"; }
eval "$(declare -f run | sed_eid)"

printf '%-6s %6s | %12s %12s %10s | %12s %12s %10s' driver procs "pair bare" "pair shim" "added" "info bare" "info shim" "added"
[ -n "${BASE_SHIM:-}" ] && printf ' | %12s %12s' "pair base" "info base"
printf '\n'
for drv in null sim; do
    n=$iters
    [ "$drv" = sim ] && iters=$((n / 20 > 1000 ? n / 20 : 1000))
    for p in 1 8 64; do
        read -r pb ib < <(run "$work/$drv" "$p")
        read -r ps is < <(run "$work/$drv" "$p" shim)
        printf '%-6s %6s | %10s ns %10s ns %7.1f ns | %10s ns %10s ns %7.1f ns' \
            "$drv" "$p" "$pb" "$ps" "$(echo "$ps - $pb" | bc)" "$ib" "$is" "$(echo "$is - $ib" | bc)"
        if [ -n "${BASE_SHIM:-}" ]; then
            read -r pB iB < <(run "$work/$drv" "$p" base)
            printf ' | %10s ns %10s ns' "$pB" "$iB"
        fi
        printf '\n'
    done
    iters=$n
done

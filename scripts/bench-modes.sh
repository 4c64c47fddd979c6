#!/usr/bin/env bash
# The cost of the system mode against the shared mode, in one run (root: it installs system
# mode into a temporary directory and starts its service there):
#   - `genv attach --index 0` + `genv detach` (a CLI write: a transaction in the shared mode, a
#     request to the service in system mode), median wall time over N pairs;
#   - `genv envs` with a few environments (a read);
#   - one allocation: the cuMemAlloc_v2 + cuMemFree_v2 pair under the shim against a do-nothing
#     driver (CPU time per pair), the shim's hot path, in each mode.
# Usage: sudo scripts/bench-modes.sh [pairs]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pairs=${1:-200}
[ "$(id -u)" = 0 ] || { echo "bench-modes: run as root (it installs system mode in a temporary directory)" >&2; exit 1; }
cargo build --release -q -p genv-shim -p genv-cli -p genv-sim-nvml -p genv-sim-cuda
rel=$root/target/release
work=$(mktemp -d /tmp/genv-modes.XXXXXX)
chmod 755 "$work"
cleanup() {
    [ -s "$work/daemon.pid" ] && kill "$(cat "$work/daemon.pid")" 2>/dev/null
    kill $(jobs -p) 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/sim" "$work/null"
cp "$rel/libcuda.so" "$work/sim/libcuda.so.1"
cp "$rel/libnvidia_ml.so" "$work/sim/libnvidia-ml.so.1"
cc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$work/null/libcuda.so.1" shim/benches/null_cuda.c
cc -O2 -o "$work/bench" shim/benches/shim_bench.c -ldl
export GENV_SIM_DIR=$work/simdir GENV_SIM_GPUS=2 LD_LIBRARY_PATH=$work/sim

# The system mode, in the temporary directory.
cfg=$work/etc/genv.conf
"$rel/genv" admin install --config "$cfg" --state-dir "$work/state" --socket "$work/run/genv.sock" \
    --no-systemd >/dev/null
GENV_CONFIG=$cfg "$rel/genv" daemon </dev/null >/dev/null 2>&1 &
echo $! >"$work/daemon.pid"
for _ in $(seq 100); do [ -S "$work/run/genv.sock" ] && break; sleep 0.05; done

# ms: median wall time of `$@` run $pairs times.
median_ms() {
    python3 - "$pairs" "$@" <<'PY'
import statistics, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
t = []
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t.append((time.perf_counter() - t0) * 1e3)
print(f"{statistics.median(t):.2f}")
PY
}

# One mode: an environment held by a sleep, then the timings. Prints "attach envs pair".
measure() {
    local mode=$1 holder eid holders=()
    # Shell stand-ins; their output goes nowhere, so that no pipe reading ours stays open.
    sleep 86400 >/dev/null 2>&1 & holder=$!
    holders+=("$holder")
    "$rel/genv" activate --gpus 1 --gpu-memory 64gi --shell bash --shell-pid "$holder" >/dev/null
    for _ in 1 2 3; do
        sleep 86400 >/dev/null 2>&1 &
        holders+=($!)
        "$rel/genv" activate --shell bash --shell-pid $! >/dev/null
    done
    eid=$holder
    local pair envs
    pair=$(GENV_ENVIRONMENT_ID=$eid median_ms sh -c "'$rel/genv' detach && '$rel/genv' attach --index 0")
    envs=$(median_ms "$rel/genv" envs)
    # The shim's hot path in this mode, against the do-nothing driver (its own NVML is the
    # simulated one: the state's device list has the UUID the null driver answers).
    export NULL_CUDA_UUID
    NULL_CUDA_UUID=$("$rel/genv" devices --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uuid"])')
    local alloc
    alloc=$(LD_LIBRARY_PATH=$work/null LD_PRELOAD=$rel/libgenv_shim.so GENV_ENVIRONMENT_ID=$eid \
        "$work/bench" 200000 | awk '$1 == "pair_ns" { print $2 }')
    kill "${holders[@]}" 2>/dev/null || true
    echo "$pair $envs $alloc"
}

read -r sp se sa < <(GENV_CONFIG= GENV_TMPDIR=$work/shared measure shared)
read -r yp ye ya < <(GENV_CONFIG=$cfg measure system)
bare=$(LD_LIBRARY_PATH=$work/null NULL_CUDA_UUID=x "$work/bench" 200000 | awk '$1 == "pair_ns" { print $2 }')
printf '%-34s %12s %12s %8s\n' "" shared system ratio
printf '%-34s %9s ms %9s ms %7.2fx\n' "detach + attach --index 0" "$sp" "$yp" "$(echo "$yp / $sp" | bc -l)"
printf '%-34s %9s ms %9s ms %7.2fx\n' "envs (4 environments)" "$se" "$ye" "$(echo "$ye / $se" | bc -l)"
printf '%-34s %9s ns %9s ns %7.2fx   (bare driver %s ns)\n' "cuMemAlloc_v2 + cuMemFree_v2" "$sa" "$ya" "$(echo "$ya / $sa" | bc -l)" "$bare"

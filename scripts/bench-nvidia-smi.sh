#!/usr/bin/env bash
# What the shim adds to stock nvidia-smi, per mode, on the simulated machine: each mode runs
# ROUNDS times without the shim, with the shim preloaded outside any environment, and inside an
# environment that has every GPU (so all three print the same GPUs), interleaved; the medians are
# printed with their ratios to the first. Printed, never asserted: wall time on a shared machine
# is no test.
#
#   scripts/bench-nvidia-smi.sh [ROUNDS]     (default 40; GENV_SIM_DRIVER picks the generation,
#                                            BIN_DIR another build of genv and the shim)
#
# Needs `make build` and `scripts/fetch-nvidia-smi.sh`. The machine: 4 GPUs; a process outside
# any environment holds 2 GiB on GPU 0, the environment's own process 1 GiB on its GPU 1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-40}
driver=${GENV_SIM_DRIVER:-535}
bin=${BIN_DIR:-$root/target/release}
if [ "$driver" = 535 ]; then smi="$root/target/nvidia-smi/usr/bin/nvidia-smi"; else smi="$root/target/nvidia-smi-$driver/usr/bin/nvidia-smi"; fi
for f in "$bin/genv" "$bin/libgenv_shim.so" "$root/target/sim/nvml-$driver/libnvidia-ml.so.1" "$smi"; do
    [ -e "$f" ] || { echo "bench-nvidia-smi: $f missing (make build; scripts/fetch-nvidia-smi.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export GENV_SIM_DRIVER=$driver GENV_SIM_GPUS=4 GENV_SIM_GPU_MEMORY=81559mi GENV_SIM_DIR="$work/sim"
export LD_LIBRARY_PATH="$root/target/sim/nvml-$driver:$root/target/sim"
export GENV_TMPDIR="$work/genv"
unset GENV_ENVIRONMENT_ID LD_PRELOAD GENV_LOG

# Holds $2 bytes on CUDA device $1 until its stdin closes (the simulated libcuda's ledger is what
# NVML reads); prints "ready" once held.
hold='import ctypes, sys
c = ctypes.CDLL("libcuda.so.1"); c.cuInit(0)
d = ctypes.c_int(); c.cuDeviceGet(ctypes.byref(d), int(sys.argv[1]))
x = ctypes.c_void_p(); c.cuDevicePrimaryCtxRetain(ctypes.byref(x), d); c.cuCtxSetCurrent(x)
p = ctypes.c_uint64(); c.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(int(sys.argv[2])))
print("ready", flush=True); sys.stdin.read()'
start_holder() { # fifo, then the command
    local fifo=$1
    shift
    mkfifo "$fifo"
    "$@" <"$fifo" >"$fifo.out" &
    pids+=($!)
    # Keeps the holder's stdin open until this script ends.
    # shellcheck disable=SC2034
    exec {fd}>"$fifo"
    for _ in $(seq 100); do
        grep -q ready "$fifo.out" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-nvidia-smi: a memory holder did not start: $(cat "$fifo.out")" >&2
    exit 1
}
start_holder "$work/outsider" python3 -c "$hold" 0 $((2 << 30))
# 470's NVML lacks nvmlDeviceGetMemoryInfo_v2, the CLI's only memory call (a known bug of the
# CLI: its GPUs register with 0 bytes): its environment is made as on 535.
cli=()
[ "$driver" != 470 ] || cli=(env GENV_SIM_DRIVER=535 LD_LIBRARY_PATH="$root/target/sim/nvml-535:$root/target/sim")
start_holder "$work/env" "${cli[@]}" "$bin/genv" exec --index 0 --index 1 --index 2 --index 3 --gpu-memory 4gi \
    -- python3 -c "$hold" 1 $((1 << 30))
eid=$("$bin/genv" envs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["eid"])' 2>/dev/null ||
    "$bin/genv" envs | awk 'NR == 2 { print $1 }')
bus=$("$smi" --query-gpu=pci.bus_id --format=csv,noheader -i 1)
inside=(env LD_PRELOAD="$bin/libgenv_shim.so" GENV_ENVIRONMENT_ID="$eid")
# The environment must be the one measured: all four GPUs, its capacity as their total.
seen=$("${inside[@]}" "$smi" --query-gpu=memory.total --format=csv,noheader | sort -u)
[ "$seen" = "4096 MiB" ] || { echo "bench-nvidia-smi: not inside the environment ($seen)" >&2; exit 1; }

# One run's wall time in microseconds.
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
one() {
    local a b
    a=$(now_us)
    "$@" >/dev/null 2>&1
    b=$(now_us)
    echo $((b - a))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

modes=(
    "table|"
    "-L|-L"
    "--query-gpu|--query-gpu=index,uuid,pci.bus_id,memory.total,memory.used,memory.free --format=csv"
    "--query-compute-apps|--query-compute-apps=pid,used_memory,gpu_uuid --format=csv"
    "-q|-q"
    "-i <bus id>|-i $bus --query-gpu=index,uuid --format=csv"
)
printf '%s\n' "nvidia-smi $driver on 4 simulated GPUs, $rounds runs each, median wall time" \
    "mode                   bare      shim outside  ratio   shim inside   ratio"
for m in "${modes[@]}"; do
    name=${m%%|*}
    read -r -a args <<<"${m#*|}"
    : >"$work/bare" && : >"$work/out" && : >"$work/in"
    for _ in $(seq "$rounds"); do
        one env "$smi" "${args[@]}" >>"$work/bare"
        one env LD_PRELOAD="$bin/libgenv_shim.so" "$smi" "${args[@]}" >>"$work/out"
        one "${inside[@]}" "$smi" "${args[@]}" >>"$work/in"
    done
    b=$(median <"$work/bare")
    o=$(median <"$work/out")
    i=$(median <"$work/in")
    ms() { bc -l <<<"$1/1000"; }
    printf '%-20s %6.2f ms   %6.2f ms    %.2fx   %6.2f ms    %.2fx\n' "$name" "$(ms "$b")" \
        "$(ms "$o")" "$(bc -l <<<"$o/$b")" "$(ms "$i")" "$(bc -l <<<"$i/$b")"
done

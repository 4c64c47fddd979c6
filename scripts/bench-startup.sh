#!/usr/bin/env bash
# What the shim adds to a process's start, on the simulated driver, in one run:
#   1. a program that never touches CUDA (every `ls` of an activated shell): spawn + exit;
#   2. CUDA's start as the runtime does it: dlopen + dlsym of libcuda, then cuInit, cuDeviceGet
#      and a first context.
# Columns: bare (no preload), an empty preload (the floor of any LD_PRELOAD), genv outside an environment (LD_PRELOAD only), genv inside one (a
# member, as in an activated shell), and, when given, HAMi-core (HAMI_CORE=/path/libvgpu.so,
# built from its sources against the same simulated libcuda/libnvidia-ml) and an earlier genv
# build (BASE_SHIM=/path/libgenv_shim.so). Medians; "+" is what the preload adds to bare, "x"
# the ratio to bare. Rounds of each configuration are interleaved so that drift in the machine's
# load hits all of them alike.
# Usage: scripts/bench-startup.sh [spawns per round] [rounds]   (CARGO_TARGET_DIR is honoured)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
spawns=${1:-400}
rounds=${2:-5}
target=${CARGO_TARGET_DIR:-$root/target}
rel=$target/release
[ -f "$root/target/sim/libcuda.so.1" ] || make -s sim >/dev/null
work=$(mktemp -d /tmp/genv-bench-startup.XXXXXX)
trap '[ -n "${holder:-}" ] && kill "$holder" 2>/dev/null; rm -rf "$work"' EXIT
cc -O2 -o "$work/spawn" shim/benches/startup_spawn.c
cc -O2 -o "$work/cuda" shim/benches/startup_cuda.c -ldl
echo 'int main(void) { return 0; }' >"$work/empty.c"
cc -O2 -o "$work/empty" "$work/empty.c"
# The floor: what preloading any shared object costs on this machine (open, map, relocate).
echo 'int genv_bench_floor;' >"$work/floor.c"
cc -O2 -shared -fPIC -o "$work/floor.so" "$work/floor.c"
export GENV_TMPDIR=$work/genv GENV_SIM_DIR=$work/sim GENV_SIM_GPUS=1 GENV_CONFIG=
export LD_LIBRARY_PATH=$root/target/sim
unset LD_PRELOAD GENV_ENVIRONMENT_ID GENV_MEMBER CUDA_VISIBLE_DEVICES

# An environment held by a sleep, as a shell holds one; its member token as the shell gets it.
sleep 3600 >/dev/null 2>&1 &
holder=$!
code=$("$rel/genv" activate --shell bash --shell-pid "$holder" --gpus 1 --gpu-memory 4gi --no-prompt)
eval "$(printf '%s\n' "$code" | grep -E '^export (GENV_ENVIRONMENT_ID|GENV_MEMBER)=')"
inside_eid=$GENV_ENVIRONMENT_ID inside_member=$GENV_MEMBER
unset GENV_ENVIRONMENT_ID GENV_MEMBER

configs=(bare floor outside inside)
[ -n "${HAMI_CORE:-}" ] && configs+=(hami)
[ -n "${BASE_SHIM:-}" ] && configs+=(base)

# vars CONFIG: the variables of the configuration, NAME=value per line.
vars() {
    case $1 in
    bare) ;;
    floor) echo "LD_PRELOAD=$work/floor.so" ;;
    outside) echo "LD_PRELOAD=$rel/libgenv_shim.so" ;;
    inside) printf '%s\n' "LD_PRELOAD=$rel/libgenv_shim.so" "GENV_ENVIRONMENT_ID=$inside_eid" "GENV_MEMBER=$inside_member" ;;
    base) printf '%s\n' "LD_PRELOAD=$BASE_SHIM" "GENV_ENVIRONMENT_ID=$inside_eid" "GENV_MEMBER=$inside_member" ;;
    hami) printf '%s\n' "LD_PRELOAD=$HAMI_CORE" CUDA_DEVICE_MEMORY_LIMIT=4g \
        "CUDA_DEVICE_MEMORY_SHARED_CACHE=$work/hami.cache" LIBCUDA_LOG_LEVEL=0 ;;
    esac
}

for ((r = 0; r < rounds; r++)); do
    for c in "${configs[@]}"; do
        mapfile -t v < <(vars "$c")
        # The spawner runs bare, as a shell does: only its children get the preload.
        read -r med min faults < <(env "${v[@]/#/CHILD_}" "$work/spawn" "$spawns" "$work/empty")
        echo "$c $med $min $faults" >>"$work/plain"
        for ((k = 0; k < 20; k++)); do
            env "${v[@]}" "$work/cuda" >>"$work/cuda.$c" 2>/dev/null || echo "fail fail" >>"$work/cuda.$c"
        done
    done
done

python3 - "$work" "${configs[@]}" <<'PY'
import os, statistics, sys
work, configs = sys.argv[1], sys.argv[2:]
names = {"bare": "bare driver", "floor": "an empty preload", "outside": "genv, outside an env", "inside": "genv, inside (member)",
         "hami": "HAMi-core", "base": "BASE_SHIM, inside"}
plain = {}
for line in open(os.path.join(work, "plain")):
    c, med, mn, f = line.split()
    plain.setdefault(c, []).append((float(med), float(mn), float(f)))
def agg(c):
    rows = plain[c]
    return (statistics.median(r[0] for r in rows), min(r[1] for r in rows),
            statistics.median(r[2] for r in rows))
b = agg("bare")
print("A program that never touches CUDA: spawn + exit, median per run (us)")
print(f"{'':24} {'median':>8} {'+':>8} {'x':>6} {'min':>8} {'faults':>7}")
for c in configs:
    m, mn, f = agg(c)
    print(f"{names[c]:24} {m:8.1f} {m - b[0]:8.1f} {m / b[0]:6.2f} {mn:8.1f} {f:7.1f}")
print()
print("CUDA start: dlopen+dlsym | cuInit+cuDeviceGet+first context, median per process (us)")
print(f"{'':24} {'load':>8} {'init':>8} {'total':>8} {'+':>8} {'x':>6}")
cuda = {}
for c in configs:
    vals = [l.split() for l in open(os.path.join(work, f"cuda.{c}"))]
    ok = [(float(a), float(b)) for a, b in vals if a != "fail"]
    if not ok:
        cuda[c] = None
        continue
    cuda[c] = (statistics.median(v[0] for v in ok), statistics.median(v[1] for v in ok),
               statistics.median(v[0] + v[1] for v in ok))
bt = cuda["bare"][2]
for c in configs:
    if cuda[c] is None:
        print(f"{names[c]:24} failed")
        continue
    l, i, t = cuda[c]
    print(f"{names[c]:24} {l:8.1f} {i:8.1f} {t:8.1f} {t - bt:8.1f} {t / bt:6.2f}")
PY

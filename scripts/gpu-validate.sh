#!/usr/bin/env bash
# Validates genv on a machine with a real NVIDIA GPU, as that machine is: prebuilt `genv` and
# `libgenv_shim.so` from BIN_DIR, the machine's own python3 and whatever of PyTorch, CuPy and JAX
# it has. Nothing is built or downloaded; a check whose package is absent is skipped, with the
# reason. Each check has a time limit and the whole run stops starting checks after
# GPU_VALIDATE_BUDGET seconds (default 420), so it ends within 8 minutes.
#
#   scripts/gpu-validate.sh [--out DIR] [--cap SIZE] [--sim] BIN_DIR
#
#   --out DIR   where summary.json (and the shim's debug log) go; default $GPU_VALIDATE_OUT, else
#               $OUT, else a temporary directory (printed)
#   --cap SIZE  the environment's capacity (default 4gi)
#   --sim       run on the simulated machine of `make build` instead of a GPU (target/sim and
#               stock nvidia-smi from target/; GENV_SIM_DRIVER picks the generation): checks the
#               script itself, without the GPU-only checks (PyTorch, CuPy, JAX need the real
#               CUDA runtime)
#
# Checks (one summary line each; the exit status is the number that failed):
#   nvidia-smi <mode>   inside an environment on GPU 0 that also carries another environment's
#                       process and a process without the shim, for the default table, -L,
#                       --query-gpu, --query-compute-apps, -q and -i <bus id>: only its GPU, the
#                       capacity as total, its own use and process, no foreign process
#   export table        the real driver's nvidia-smi table (size, NULL slots, process records)
#                       and what the shim made of it (its debug log): where a new driver's table
#                       is first seen
#   pytorch, pytorch expandable_segments, cupy, jax
#                       device count, memory info, allocation refused at the capacity
#   two processes       of one environment, held together to the capacity
#   training step       overhead of a small PyTorch training step under the shim
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${GPU_VALIDATE_OUT:-${OUT:-}}
cap=${CAP:-4gi}
sim=0
bin=""
budget=${GPU_VALIDATE_BUDGET:-420}
PY=${PYTHON:-python3}

usage() {
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out_dir=${2:?--out needs a directory}; shift 2 ;;
    --cap) cap=${2:?--cap needs a size}; shift 2 ;;
    --sim) sim=1; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "gpu-validate: unknown option $1" >&2; usage 2 >&2 ;;
    *) bin=$1; shift ;;
    esac
done
die() {
    echo "gpu-validate: $*" >&2
    exit 1
}
[ -n "$bin" ] || { echo "gpu-validate: BIN_DIR (with genv, libgenv_shim.so and libgenv_shim_core.so) is required" >&2; usage 2 >&2; }
bin=$(cd "$bin" 2>/dev/null && pwd) || die "no directory $bin"
GENV=$bin/genv
SHIM=$bin/libgenv_shim.so
[ -x "$GENV" ] || die "$GENV missing or not executable"
[ -f "$SHIM" ] || die "$SHIM missing"
command -v "$PY" >/dev/null || die "$PY not found (set PYTHON)"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

work=$(mktemp -d /tmp/genv-gpu-validate.XXXXXX) || die "mktemp failed"
if [ -z "$out_dir" ]; then
    out_dir=$work/out
fi
mkdir -p "$out_dir" || die "cannot create $out_dir"
out_dir=$(cd "$out_dir" && pwd)
export GENV_TMPDIR=$work/genv
unset GENV_ENVIRONMENT_ID LD_PRELOAD GENV_SHIM_BYPASS CUDA_VISIBLE_DEVICES
if [ "$sim" = 1 ]; then
    [ -e "$root/target/sim/libcuda.so.1" ] || die "no simulated driver in target/sim: run make build"
    libs=$root/target/sim smi_dir=$root/target/nvidia-smi/usr/bin
    if [ -n "${GENV_SIM_DRIVER:-}" ]; then
        libs=$root/target/sim/nvml-$GENV_SIM_DRIVER:$libs
        smi_dir=$root/target/nvidia-smi-$GENV_SIM_DRIVER/usr/bin
    fi
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PATH="$smi_dir:$PATH"
    export GENV_SIM_DIR=$work/sim GENV_SIM_GPUS=2 GENV_SIM_GPU_MEMORY=80gi
fi
command -v nvidia-smi >/dev/null || die "nvidia-smi not found"
timeout 30 nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi cannot talk to the driver"

pids=()
# shellcheck disable=SC2317  # (run by the EXIT trap)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

results=$work/results.tsv
: >"$results"
passed=0 failed=0 skipped=0
t0=$SECONDS
record() { # name status detail seconds
    local name=$1 status=$2 detail=$3 secs=${4:-0}
    case "$status" in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *) status=FAIL; failed=$((failed + 1)) ;;
    esac
    printf '%-4s %-36s %s\n' "$status" "$name" "$detail"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "${detail//$'\t'/ }" "$secs" >>"$results"
}
over_budget() { [ $((SECONDS - t0)) -ge "$budget" ]; }
has_module() { "$PY" -c "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)" "$@" 2>/dev/null; }

cap_bytes=$("$PY" - "$cap" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)(ki|mi|gi|k|m|g)?", sys.argv[1].lower())
if not m:
    sys.exit("bad size")
print(int(m[1]) * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}[m[2] or ""])
PY
) || die "--cap $cap is not a size (like 4gi)"
cap_mib=$((cap_bytes / 1048576))

# ---------------------------------------------------------------------------------------------
# Processes that hold device memory through libcuda (ctypes: no package needed). HOLD prints
# "ready <pid> <environment id or ->" once it holds its bytes, and holds them until stdin closes.
HOLD=$(cat <<'PY'
import ctypes, os, sys
c = ctypes.CDLL("libcuda.so.1")
def ok(r, what):
    if r:
        print(f"error {what} {r}", flush=True)
        sys.exit(1)
ok(c.cuInit(0), "cuInit")
d = ctypes.c_int()
ok(c.cuDeviceGet(ctypes.byref(d), int(sys.argv[1])), "cuDeviceGet")
x = ctypes.c_void_p()
ok(c.cuDevicePrimaryCtxRetain(ctypes.byref(x), d), "cuDevicePrimaryCtxRetain")
ok(c.cuCtxSetCurrent(x), "cuCtxSetCurrent")
p = ctypes.c_uint64()
ok(c.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(int(sys.argv[2]))), "cuMemAlloc_v2")
print("ready", os.getpid(), os.environ.get("GENV_ENVIRONMENT_ID", "-"), flush=True)
sys.stdin.read()
PY
)
holder_n=0
# Starts a holder ("$@" is the command) and sets $holder_line to its ready line.
start_holder() {
    holder_n=$((holder_n + 1))
    local fifo=$work/holder$holder_n
    mkfifo "$fifo" || return 1
    "$@" <"$fifo" >"$fifo.out" 2>&1 &
    pids+=($!)
    # Keeps the holder's stdin open until the script ends.
    exec {fd}>"$fifo"
    pids_fds+=("$fd")
    local i
    for i in $(seq 300); do
        holder_line=$(grep -m1 '^ready ' "$fifo.out" 2>/dev/null) && return 0
        grep -q '^error ' "$fifo.out" 2>/dev/null && break
        [ "$i" -gt 0 ] && sleep 0.1
    done
    holder_line="did not start: $(tr '\n' ' ' <"$fifo.out" | cut -c1-300)"
    return 1
}
pids_fds=()

# ---------------------------------------------------------------------------------------------
echo "== the machine"
driver=$(timeout 30 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)
gpu_name=$(timeout 30 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
gpu_count=$(timeout 30 nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
cuda=$(timeout 30 nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n1)
echo "driver $driver, CUDA $cuda, $gpu_count x $gpu_name, python $("$PY" -c 'import platform; print(platform.python_version())')"

echo "== nvidia-smi inside an environment, with foreign processes on its GPU"
scenario=ok
if start_holder "$PY" -c "$HOLD" 0 $((1 << 30)); then
    outsider=$(awk '{ print $2 }' <<<"$holder_line")
else
    scenario="a process without the shim $holder_line"
fi
if [ "$scenario" = ok ] && start_holder "$GENV" exec --index 0 --over-subscribe --gpu-memory 8gi -- "$PY" -c "$HOLD" 0 $((1 << 30)); then
    other=$(awk '{ print $2 }' <<<"$holder_line")
else
    [ "$scenario" = ok ] && scenario="another environment's process $holder_line"
fi
own_used=$((512 << 20))
if [ "$scenario" = ok ] && start_holder "$GENV" exec --index 0 --over-subscribe --gpu-memory "$cap" -- "$PY" -c "$HOLD" 0 "$own_used"; then
    own=$(awk '{ print $2 }' <<<"$holder_line")
    eid=$(awk '{ print $3 }' <<<"$holder_line")
else
    [ "$scenario" = ok ] && scenario="the environment's process $holder_line"
fi

SMI_CHECK=$(cat <<'PY'
import json, os, re, subprocess, sys
a = json.loads(sys.argv[1])
inside = dict(os.environ, **a["inside"])
own, foreign, cap, used = a["own"], a["foreign"], a["cap_mib"], a["used_mib"]
def smi(*args, env=inside):
    return subprocess.run(["nvidia-smi", *args], env=env, capture_output=True, text=True,
                          errors="replace", timeout=60)
host = [l.split(", ") for l in smi("--query-gpu=index,uuid,pci.bus_id", "--format=csv,noheader", env=os.environ).stdout.strip().splitlines()]
uuid, bus = host[0][1], host[0][2]
def shown(pid, out):
    return re.search(rf"\b{pid}\b", out) is not None
def foreign_in(out):
    return [p for p in foreign if shown(p, out)]
checks = []
def check(mode, fn):
    try:
        ok, detail = fn()
    except Exception as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    checks.append({"mode": mode, "ok": bool(ok), "detail": detail})
def table():
    out = smi().stdout
    gpus = re.findall(r"^\|\s+(\d+)\s.*\|\s+[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d", out, re.M)
    mem = re.search(rf"\b{used}MiB /\s+{cap}MiB", out) is not None
    bad = foreign_in(out)
    return gpus == ["0"] and mem and shown(own, out) and not bad, \
        f"GPUs {gpus}, {used}/{cap} MiB {'shown' if mem else 'NOT shown'}, own process {'shown' if shown(own, out) else 'MISSING'}, foreign shown {bad}"
def listing():
    lines = smi("-L").stdout.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("GPU 0: ") and uuid in lines[0], f"{lines}"
def query_gpu():
    out = smi("--query-gpu=index,uuid,pci.bus_id,memory.total,memory.used", "--format=csv,noheader,nounits").stdout
    rows = [[c.strip() for c in l.split(",")] for l in out.strip().splitlines()]
    return rows == [["0", uuid, bus, str(cap), str(used)]], f"{rows}"
def query_apps():
    out = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits").stdout
    rows = sorted([c.strip() for c in l.split(",")] for l in out.strip().splitlines())
    return rows == [[str(own), str(used)]], f"{rows}"
def query_all():
    out = smi("-q").stdout
    attached = re.findall(r"^Attached GPUs\s+: (\d+)", out, re.M)
    fb = re.findall(r"FB Memory Usage\n\s+Total\s+: (\d+) MiB\n(?:\s+Reserved\s+: \d+ MiB\n)?\s+Used\s+: (\d+) MiB", out)
    procs = re.findall(r"Process ID\s+: (\d+)", out)
    bad = foreign_in(out)
    return attached == ["1"] and fb == [(str(cap), str(used))] and procs == [str(own)] and not bad, \
        f"attached {attached}, FB {fb}, processes {procs}, foreign shown {bad}"
def by_bus():
    out = smi("--query-gpu=index,uuid", "--format=csv,noheader", "-i", bus).stdout.strip()
    return out == f"0, {uuid}", f"-i {bus}: {out!r}"
def outside():
    out = smi(env=os.environ).stdout
    missing = [p for p in [own, *foreign] if not shown(p, out)]
    return not missing, f"processes not shown outside: {missing}" if missing else "every process shown outside"
for mode, fn in [("default table", table), ("-L", listing), ("--query-gpu", query_gpu),
                 ("--query-compute-apps", query_apps), ("-q", query_all), ("-i <bus id>", by_bus),
                 ("outside the environment", outside)]:
    check(mode, fn)
print(json.dumps(checks))
PY
)
if [ "$scenario" = ok ]; then
    t=$SECONDS
    args=$("$PY" -c 'import json, sys; print(json.dumps(dict(inside={"LD_PRELOAD": sys.argv[1], "GENV_ENVIRONMENT_ID": sys.argv[2]}, own=int(sys.argv[3]), foreign=[int(sys.argv[4]), int(sys.argv[5])], cap_mib=int(sys.argv[6]), used_mib=int(sys.argv[7]))))' \
        "$SHIM" "$eid" "$own" "$outsider" "$other" "$cap_mib" $((own_used >> 20)))
    smi_json=$(timeout 300 "$PY" -c "$SMI_CHECK" "$args" 2>&1 | tail -n1)
    lines=$("$PY" -c '
import json, sys
for c in json.loads(sys.argv[1]):
    print(("PASS" if c["ok"] else "FAIL") + "\t" + c["mode"] + "\t" + c["detail"])' "$smi_json" 2>/dev/null)
    if [ -n "$lines" ]; then
        while IFS=$'\t' read -r st mode detail; do
            record "nvidia-smi $mode" "$st" "$detail" $((SECONDS - t))
        done <<<"$lines"
    else
        record "nvidia-smi view" FAIL "no result: ${smi_json:0:300}" $((SECONDS - t))
    fi
else
    record "nvidia-smi view" FAIL "scenario not set up: $scenario"
fi

echo "== nvidia-smi's export table"
PROBE=$(cat <<'PY'
import ctypes, json, re, sys
known = [int(p) for p in sys.argv[1].split(",") if p]
lib = ctypes.CDLL("libnvidia-ml.so.1")
uuid = bytes([0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4])
get = lib.nvmlInternalGetExportTable
get.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
t = ctypes.c_void_p()
out = {"result": get(ctypes.byref(t), uuid)}
if out["result"] == 0 and t.value:
    slots = ctypes.cast(t, ctypes.POINTER(ctypes.c_size_t))
    n = slots[0] // 8
    out.update(size=hex(slots[0]), slots=n, null_slots=[i for i in range(1, n) if not slots[i]])
    if n > 213 and slots[213] and lib.nvmlInit_v2() == 0:
        h = ctypes.c_void_p()
        lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h))
        fn = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p)(slots[213])
        cap = 16
        buf = ctypes.create_string_buffer(cap * 0x4000)
        count = ctypes.c_uint(cap)
        r = fn(h, ctypes.byref(count), buf)
        raw = buf.raw
        # Where the known pids are (a record starts with its pid), and the first text in the
        # first record (its name): the record layout of this driver.
        at = sorted(o for o in (raw.find(p.to_bytes(4, "little")) for p in known) if o >= 0)
        rec = raw[at[0]:at[0] + 0x4000] if at else b""
        m = re.search(rb"[\x20-\x7e]{4,}", rec[0x10:])
        out["slot213"] = {"result": r, "count": count.value, "pid_offsets": at,
                          "record_size": at[1] - at[0] if len(at) > 1 else None,
                          "name_offset": m.start() + 0x10 if m else None,
                          "name": m.group().decode() if m else None,
                          "head": rec[:0x28].hex()}
print(json.dumps(out))
PY
)
t=$SECONDS
probe=$(timeout 60 "$PY" -c "$PROBE" "${outsider:-},${other:-},${own:-}" 2>&1 | tail -n1)
printf '%s\n' "$probe" >"$out_dir/export-table.json"
log=$out_dir/shim-debug.log
: >"$log"
if [ -n "${eid:-}" ]; then
    timeout 60 env LD_PRELOAD="$SHIM" GENV_ENVIRONMENT_ID="$eid" GENV_LOG=debug GENV_LOG_FILE="$log" nvidia-smi >/dev/null 2>&1
fi
shim_said=$(grep -h "export table\|process records" "$log" 2>/dev/null | sed 's/^.*nvml: //' | sort -u | tr '\n' ' ')
size=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1]).get("size", ""))' "$probe" 2>/dev/null)
if [ -n "$size" ] && [ -n "$shim_said" ]; then
    record "export table" PASS "size $size; shim: $shim_said" $((SECONDS - t))
else
    record "export table" FAIL "probe: ${probe:0:200}; shim: ${shim_said:-nothing logged}" $((SECONDS - t))
fi

# ---------------------------------------------------------------------------------------------
# Allocates 256 MiB blocks until refused; prints JSON: count, total, info, the error's type.
TORCH=$(cat <<'PY'
import json, torch
n = torch.cuda.device_count()
free, total = torch.cuda.mem_get_info()
held, err = [], None
try:
    while True:
        held.append(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
except Exception as e:
    err = type(e).__name__
print(json.dumps(dict(count=n, total=total, free=free, taken=len(held) * (256 << 20), err=err)))
PY
)
CUPY=$(cat <<'PY'
import json, cupy
n = cupy.cuda.runtime.getDeviceCount()
free, total = cupy.cuda.runtime.memGetInfo()
held, err = [], None
try:
    while True:
        held.append(cupy.empty(256 << 20, dtype=cupy.uint8))
except Exception as e:
    err = type(e).__name__
print(json.dumps(dict(count=n, total=total, free=free, taken=len(held) * (256 << 20), err=err)))
PY
)
JAX=$(cat <<'PY'
import json, jax, jax.numpy as jnp
n = len(jax.devices("gpu"))
held, err = [], None
try:
    while True:
        held.append(jnp.zeros(256 << 20, dtype=jnp.uint8).block_until_ready())
except Exception as e:
    err = type(e).__name__ + ": " + str(e).split("\n")[0][:80]
print(json.dumps(dict(count=n, total=None, free=None, taken=len(held) * (256 << 20), err=err)))
PY
)
VERDICT=$(cat <<'PY'
import json, re, sys
try:
    r = json.loads(sys.argv[1].strip().splitlines()[-1])
except Exception:
    print("FAIL no result: " + sys.argv[1][-300:].replace("\n", " | "))
    sys.exit()
cap, want = int(sys.argv[2]), sys.argv[3]
problems = []
if r["count"] != 1:
    problems.append(f"{r['count']} devices")
if r["total"] is not None and r["total"] != cap:
    problems.append(f"total {r['total']} != {cap}")
if r["taken"] > cap:
    problems.append(f"took {r['taken']} > cap {cap}")
# CUDA contexts are not counted: everything but the last block should fit.
if r["taken"] < cap - (512 << 20):
    problems.append(f"took only {r['taken']} of {cap}")
if not re.search(want, str(r["err"])):
    problems.append(f"error {r['err']!r}")
print(("FAIL " + "; ".join(problems)) if problems else f"PASS took {r['taken'] >> 20} MiB, then {r['err']}")
PY
)
# name, modules it needs, limit in seconds, error wanted, code, [VAR=value...]
alloc_check() {
    local name=$1 modules=$2 limit=$3 want=$4 code=$5
    shift 5
    if [ "$sim" = 1 ]; then
        record "$name" SKIP "the simulated driver cannot run the CUDA runtime"
        return
    fi
    # shellcheck disable=SC2086
    if ! has_module $modules; then
        record "$name" SKIP "$PY has no $modules"
        return
    fi
    if over_budget; then
        record "$name" SKIP "time budget of ${budget}s spent"
        return
    fi
    local t=$SECONDS json verdict
    json=$(timeout "$limit" "$GENV" exec --gpus 1 --gpu-memory "$cap" -- env "$@" "$PY" -c "$code" 2>&1)
    verdict=$("$PY" -c "$VERDICT" "$json" "$cap_bytes" "$want")
    record "$name" "${verdict%% *}" "${verdict#* }" $((SECONDS - t))
}

echo "== PyTorch, CuPy, JAX"
alloc_check "pytorch" torch 120 "OutOfMemoryError" "$TORCH"
alloc_check "pytorch expandable_segments" torch 120 "OutOfMemoryError" "$TORCH" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
alloc_check "cupy" cupy 120 "OutOfMemoryError" "$CUPY"
jax_plugin=""
for m in jax_cuda13_plugin jax_cuda12_plugin jax_plugins.xla_cuda13 jax_plugins.xla_cuda12; do
    if has_module jax "$m"; then jax_plugin=$m; break; fi
done
if [ -z "$jax_plugin" ] && [ "$sim" = 0 ]; then
    if has_module jax; then record "jax" SKIP "jax has no CUDA plugin"; else record "jax" SKIP "$PY has no jax"; fi
else
    alloc_check "jax" jax 150 "RESOURCE_EXHAUSTED|XlaRuntimeError|ResourceExhausted" "$JAX" XLA_PYTHON_CLIENT_PREALLOCATE=false
fi

echo "== two processes of one environment"
# Each of two processes of one environment asks for 60% of the capacity through libcuda: one
# gets it, the other CUDA_ERROR_OUT_OF_MEMORY (2).
TWO=$(cat <<'PY'
import ctypes, json, subprocess, sys
code = r'''
import ctypes, sys
c = ctypes.CDLL("libcuda.so.1")
c.cuInit(0)
d = ctypes.c_int(); c.cuDeviceGet(ctypes.byref(d), 0)
x = ctypes.c_void_p(); c.cuDevicePrimaryCtxRetain(ctypes.byref(x), d); c.cuCtxSetCurrent(x)
p = ctypes.c_uint64()
print(c.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(int(sys.argv[1]))), flush=True)
sys.stdin.read()
'''
size = str(int(int(sys.argv[1]) * 0.6))
ps = [subprocess.Popen([sys.executable, "-c", code, size], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
outs = sorted(p.stdout.readline().strip() for p in ps)
for p in ps:
    p.stdin.close()
    p.wait()
print(json.dumps(outs))
PY
)
if over_budget; then
    record "two processes share the capacity" SKIP "time budget of ${budget}s spent"
else
    t=$SECONDS
    two=$(timeout 120 "$GENV" exec --gpus 1 --gpu-memory "$cap" -- "$PY" -c "$TWO" "$cap_bytes" 2>&1 | tail -n1)
    if [ "$two" = '["0", "2"]' ]; then
        record "two processes share the capacity" PASS "one allocation granted, the other CUDA_ERROR_OUT_OF_MEMORY" $((SECONDS - t))
    else
        record "two processes share the capacity" FAIL "results $two (want 0 and 2)" $((SECONDS - t))
    fi
fi

echo "== overhead of a training step"
STEP=$(cat <<'PY'
import time, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1024)).cuda()
opt = torch.optim.SGD(m.parameters(), lr=0.01)
x = torch.randn(256, 1024, device="cuda")
def step():
    opt.zero_grad(set_to_none=True)
    loss = m(x).square().mean()
    loss.backward()
    opt.step()
for _ in range(50):
    step()
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(500):
    step()
torch.cuda.synchronize()
print((time.perf_counter() - t) / 500 * 1e3)
PY
)
if [ "$sim" = 1 ]; then
    record "training step overhead" SKIP "the simulated driver cannot run the CUDA runtime"
elif ! has_module torch; then
    record "training step overhead" SKIP "$PY has no torch"
elif over_budget; then
    record "training step overhead" SKIP "time budget of ${budget}s spent"
else
    t=$SECONDS
    bare=$(CUDA_VISIBLE_DEVICES=0 timeout 120 "$PY" -c "$STEP" 2>/dev/null | tail -n1)
    shim=$(timeout 120 "$GENV" exec --gpus 1 --gpu-memory "$cap" -- "$PY" -c "$STEP" 2>/dev/null | tail -n1)
    if [[ "$bare" =~ ^[0-9.]+$ ]] && [[ "$shim" =~ ^[0-9.]+$ ]]; then
        read -r verdict detail < <("$PY" -c "
b, s = $bare, $shim
print('PASS' if s / b < 1.05 else 'FAIL', f'{b:.3f} ms bare, {s:.3f} ms under the shim ({s / b:.3f}x)')")
        record "training step overhead" "$verdict" "$detail" $((SECONDS - t))
    else
        record "training step overhead" FAIL "no timing (bare: '$bare', shim: '$shim')" $((SECONDS - t))
    fi
fi

# ---------------------------------------------------------------------------------------------
"$PY" - "$results" "$out_dir/summary.json" "$probe" "$sim" "$driver" "$cuda" "$gpu_name" \
    "$gpu_count" "$cap" $((SECONDS - t0)) <<'PY'
import json, sys, time
results, path, probe, sim, driver, cuda, gpu, count, cap, secs = sys.argv[1:]
checks = []
for line in open(results):
    name, status, detail, took = line.rstrip("\n").split("\t")
    checks.append({"name": name, "status": status.lower(), "detail": detail, "seconds": int(took)})
try:
    table = json.loads(probe)
except ValueError:
    table = {"error": probe[:300]}
by = {s: sum(c["status"] == s for c in checks) for s in ("pass", "fail", "skip")}
summary = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "simulated": sim == "1",
    "driver": driver, "cuda": cuda, "gpu": gpu, "gpus": int(count or 0), "capacity": cap,
    "seconds": int(secs), "export_table": table,
    "passed": by["pass"], "failed": by["fail"], "skipped": by["skip"], "checks": checks,
}
with open(path, "w") as f:
    json.dump(summary, f, indent=2)
PY
echo
echo "== $passed passed, $failed failed, $skipped skipped in $((SECONDS - t0))s (capacity $cap); $out_dir/summary.json"
exit "$failed"

#!/usr/bin/env bash
# Validates the shim on a machine with a real NVIDIA GPU and driver (it cannot run on the
# simulated machine: the CUDA runtime needs the real driver's private export tables).
#
# What it checks, each inside `genv exec --gpus 1 --gpu-memory $CAP` (default 4gi):
#   nvidia-smi   device count, memory total = the capacity
#   PyTorch      device count, mem_get_info total = capacity, allocation refused at the capacity
#                (torch.cuda.OutOfMemoryError), with and without
#                PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (cuMemCreate / cuMemMap)
#   CuPy         the same through CuPy's memory pool
#   JAX          the same through XLA's allocator (no preallocation)
#   two processes of one environment together held to the capacity
#   overhead     a small training step with and without the shim
# It installs what it needs into a virtual environment ($VENV, default target/gpu-venv) with pip
# and prints a summary; the exit status is the number of failed checks.
# Usage: scripts/gpu-validate.sh        (CAP=2gi, VENV=..., SKIP_INSTALL=1, CUDA_PKG=cu12 honoured)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CAP=${CAP:-4gi}
VENV=${VENV:-$root/target/gpu-venv}
CUDA_PKG=${CUDA_PKG:-cu12}

command -v nvidia-smi >/dev/null || { echo "gpu-validate: nvidia-smi not found: this needs a real GPU" >&2; exit 1; }
nvidia-smi -L >/dev/null || { echo "gpu-validate: nvidia-smi cannot talk to the driver" >&2; exit 1; }

echo "== building genv and the shim"
cargo build --release -q -p genv-cli -p genv-shim || exit 1
GENV=$root/target/release/genv
export GENV_TMPDIR=${GENV_TMPDIR:-$(mktemp -d /tmp/genv-gpu.XXXXXX)}

if [ -z "${SKIP_INSTALL:-}" ]; then
    echo "== installing PyTorch, CuPy, JAX and pynvml into $VENV (this takes a while)"
    python3 -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q torch "cupy-cuda12x" "jax[cuda12]" nvidia-ml-py numpy || {
        echo "gpu-validate: pip install failed" >&2
        exit 1
    }
fi
PY=$VENV/bin/python

pass=0
fail=0
results=()
record() { # name status detail
    if [ "$2" = PASS ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
    results+=("$(printf '%-4s %-38s %s' "$2" "$1" "$3")")
    printf '%-4s %-38s %s\n' "$2" "$1" "$3"
}

cap_bytes=$("$PY" -c "
import re,sys
m = re.fullmatch(r'(\d+)(ki|mi|gi|k|m|g)?', '$CAP'.lower())
n, u = int(m.group(1)), m.group(2) or ''
print(n * {'':1,'k':10**3,'m':10**6,'g':10**9,'ki':2**10,'mi':2**20,'gi':2**30}[u])")
cap_mib=$((cap_bytes / 1048576))
in_env() { "$GENV" exec --gpus 1 --gpu-memory "$CAP" -- "$@"; }

echo "== nvidia-smi"
out=$(in_env nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits 2>&1)
n=$(echo "$out" | grep -c .)
total=$(echo "$out" | head -1 | awk -F', *' '{print $2}')
[ "$n" = 1 ] && [ "$total" = "$cap_mib" ] &&
    record "nvidia-smi view" PASS "1 GPU, total ${total} MiB" ||
    record "nvidia-smi view" FAIL "$out"

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

check_alloc() { # name json want_err_regex
    local name=$1 json=$2 want=$3
    "$PY" - "$json" "$cap_bytes" "$want" <<'PY'
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
}

run_check() { # name want_err code [env...]
    local name=$1 want=$2 code=$3
    shift 3
    local json
    json=$(in_env env "$@" "$PY" -c "$code" 2>&1)
    local verdict
    verdict=$(check_alloc "$name" "$json" "$want")
    record "$name" "${verdict%% *}" "${verdict#* }"
}

echo "== PyTorch"
run_check "pytorch" "OutOfMemoryError" "$TORCH"
run_check "pytorch expandable_segments" "OutOfMemoryError" "$TORCH" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
echo "== CuPy"
run_check "cupy" "OutOfMemoryError" "$CUPY"
echo "== JAX"
run_check "jax" "RESOURCE_EXHAUSTED|XlaRuntimeError|ResourceExhausted" "$JAX" XLA_PYTHON_CLIENT_PREALLOCATE=false

echo "== two processes of one environment"
TWO=$(cat <<'PY'
import json, subprocess, sys
code = "import torch,sys\ntry:\n  x=torch.empty(int(sys.argv[1]),dtype=torch.uint8,device='cuda'); print('ok')\nexcept Exception as e: print(type(e).__name__)\nsys.stdin.read()"
size = str(int(int(sys.argv[1]) * 0.6))
ps = [subprocess.Popen([sys.executable, "-c", code, size], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
outs = [p.stdout.readline().strip() for p in ps]
for p in ps:
    p.stdin.close(); p.wait()
print(json.dumps(outs))
PY
)
out=$(in_env "$PY" -c "$TWO" "$cap_bytes" 2>&1 | tail -1)
case "$out" in
*'"ok"'*'OutOfMemoryError'* | *'OutOfMemoryError'*'"ok"'*) record "two processes share the capacity" PASS "$out" ;;
*) record "two processes share the capacity" FAIL "$out" ;;
esac

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
bare=$(GENV_SHIM_BYPASS= CUDA_VISIBLE_DEVICES=0 "$PY" -c "$STEP" 2>/dev/null | tail -1)
shim=$(in_env "$PY" -c "$STEP" 2>/dev/null | tail -1)
if [ -n "$bare" ] && [ -n "$shim" ]; then
    ratio=$("$PY" -c "print(f'{$shim / $bare:.3f}')")
    verdict=$("$PY" -c "print('PASS' if $shim / $bare < 1.05 else 'FAIL')")
    record "training step overhead" "$verdict" "$(printf '%.3f ms bare, %.3f ms under the shim (x%s)' "$bare" "$shim" "$ratio")"
else
    record "training step overhead" FAIL "no timing (bare: '$bare', shim: '$shim')"
fi

echo
echo "== summary: $pass passed, $fail failed (capacity $CAP)"
printf '%s\n' "${results[@]}"
exit "$fail"

#!/usr/bin/env bash
# `make demo`: the story of docs/usage.rst on the simulated 4-GPU machine (4 x H100 80GB), in a
# private state directory, through the bash shell integration. Each command is echoed before it
# runs (`$ genv status`). Stock nvidia-smi (target/nvidia-smi, from `make nvidia-smi`) is used
# when present; the steps that need it are skipped with a note otherwise.
# GENV_BIN_DIR / GENV_SIM_LIB_DIR point at other builds (default target/release, target/sim).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GENV_BIN_DIR:-$root/target/release}
sim=${GENV_SIM_LIB_DIR:-$root/target/sim}
smi_dir=$root/target/nvidia-smi/usr/bin

for f in "$bin/genv" "$bin/libgenv_shim.so" "$bin/libgenv_shim_core.so" "$sim/libnvidia-ml.so.1"; do
    if [ ! -e "$f" ]; then
        echo "demo: $f is missing; run \`make build\` first" >&2
        exit 1
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/genv-demo.XXXXXX")
bg_pid=""
cleanup() {
    if [ -n "$bg_pid" ]; then kill "$bg_pid" 2>/dev/null; wait "$bg_pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A private world: its own state file, simulated machine and HOME; nothing inherited from an
# outer genv environment.
unset GENV_ENVIRONMENT_ID LD_PRELOAD GENV_SHIM_PATH GENV_SHIM_BYPASS
export GENV_TMPDIR="$work/genv" GENV_SIM_DIR="$work/sim" GENV_SIM_GPUS=4
export LD_LIBRARY_PATH="$sim" HOME="$work/home"
export PATH="$bin:$smi_dir:$PATH"
mkdir -p "$HOME" "$work/project"
cd "$work/project" || exit 1

if [ -t 1 ]; then B=$'\033[1m' D=$'\033[2m' N=$'\033[0m'; else B="" D="" N=""; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
note() { printf '%s# %s%s\n' "$D" "$*" "$N"; }
# Echo a command, then run it (a shell function such as `genv` included).
run() {
    printf '%s$ %s%s\n' "$B" "$*" "$N"
    "$@"
}
have_smi=false
if [ -x "$smi_dir/nvidia-smi" ]; then have_smi=true; fi
smi() {
    if $have_smi; then
        run timeout 30 nvidia-smi "$@"
    else
        note "skipped: nvidia-smi $* (stock nvidia-smi not found; run \`make nvidia-smi\`)"
    fi
}

step "The machine: 4 simulated H100s, as stock nvidia-smi sees them (no genv involved)"
smi -L
run genv devices

step "Shell integration: put this line in ~/.bashrc (here: this script's bash)"
printf '%s$ eval "$(genv shell-init bash)"%s\n' "$B" "$N"
eval "$(genv shell-init bash)"
run genv status

step "Activating an environment: it starts detached from all GPUs"
PS1='demo$ '
run genv activate
note "the prompt is now: $PS1"
run genv status
smi

step "Configuring the environment"
run genv config name my-environment
run genv config gpus 2
run genv config gpu-memory 4gi
run genv config

step "Attaching devices: genv picks 2 free GPUs"
run genv attach
run genv status
note "nvidia-smi now shows only the environment's GPUs, with its 4 GiB capacity as the total"
smi

step "A second environment, in another shell (a background process here)"
# A fresh bash, as in another terminal: nothing of this shell's environment is inherited.
env -u GENV_ENVIRONMENT_ID -u LD_PRELOAD -u GENV_SHIM_PATH bash --norc --noprofile -c '
    eval "$(genv shell-init bash)"
    genv activate --name "Norwegian Wood" --gpus 1 || exit 1
    touch "$0"
    exec sleep 60' "$work/second-ready" &
bg_pid=$!
for _ in $(seq 100); do [ -e "$work/second-ready" ] && break; sleep 0.05; done
run genv envs
run genv devices
note "a device of another environment cannot be attached"
run genv attach --index 2
echo "(exit status $?)"

step "Configuration as code: save to .genv/ in the project"
run mkdir -p .genv
run genv home
run genv config --save
run head .genv/name .genv/gpus .genv/gpu-memory

step "Detaching and deactivating"
run genv detach
run genv status
smi
run genv deactivate
note "the prompt is back: $PS1"
run genv status

step "A new activation in the project loads .genv/ and attaches"
run genv activate
run genv status
run genv deactivate

step "One command in its own environment: genv exec, with a 4 GiB capacity enforced"
alloc_src="$work/alloc.c"
cat >"$alloc_src" <<'EOF'
/* Allocates 1 GiB at a time through the CUDA driver API until refused ("info": only shows
 * the devices and the memory of device 0). */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) { printf("cannot load libcuda.so.1: %s\n", dlerror()); return 1; }
    int (*init)(unsigned) = dlsym(h, "cuInit");
    int (*count)(int *) = dlsym(h, "cuDeviceGetCount");
    int (*retain)(void **, int) = dlsym(h, "cuDevicePrimaryCtxRetain");
    int (*current)(void *) = dlsym(h, "cuCtxSetCurrent");
    int (*info)(size_t *, size_t *) = dlsym(h, "cuMemGetInfo_v2");
    int (*alloc)(unsigned long long *, size_t) = dlsym(h, "cuMemAlloc_v2");
    if (!init || !count || !retain || !current || !info || !alloc) { printf("missing CUDA symbols\n"); return 1; }
    int n = 0, r;
    void *ctx;
    size_t free_, total;
    unsigned long long p;
    if ((r = init(0)) || (r = count(&n))) { printf("CUDA error %d\n", r); return 1; }
    printf("CUDA devices: %d\n", n);
    if (n == 0) return 1;
    if ((r = retain(&ctx, 0)) || (r = current(ctx)) || (r = info(&free_, &total))) { printf("CUDA error %d\n", r); return 1; }
    printf("device 0: %zu MiB free of %zu MiB\n", free_ >> 20, total >> 20);
    if (argc > 1) return 0;
    for (int i = 1; i <= 100; i++) {
        r = alloc(&p, 1ull << 30);
        if (r) { printf("allocation %d of 1 GiB refused: CUDA error %d (2 = out of memory)\n", i, r); return 0; }
        printf("allocation %d of 1 GiB: ok\n", i);
    }
    return 0;
}
EOF
if ! command -v cc >/dev/null; then
    note "skipped: no C compiler (cc) to build the CUDA example"
elif [ ! -e "$sim/libcuda.so.1" ]; then
    note "skipped: the simulated libcuda.so.1 is not built (make build)"
elif ! cc -O1 -o "$work/alloc" "$alloc_src" -ldl; then
    note "skipped: the CUDA example did not compile"
else
    note "outside genv, the program sees the whole machine:"
    run "$work/alloc" info
    run genv exec --gpus 1 --gpu-memory 4gi -- "$work/alloc" | tee "$work/exec.out"
    echo "(exit status ${PIPESTATUS[0]})"
    if grep -q "allocation 5 of 1 GiB: ok" "$work/exec.out"; then
        note "the capacity was NOT enforced: this build's shim lacks its CUDA wrappers (rebuild: make build)"
    fi
    run genv envs
fi

step "Done"
note "the environment of the second shell ends with it"

#!/usr/bin/env bash
# `make bench`: times `genv envs`, `genv attach` and `genv devices` (and a few more) with 1000
# environments registered, on the simulated 4-GPU machine, in a private state directory.
# Prints a table of mean/median/min/max per command; asserts nothing about time.
#   ENVS=1000 RUNS=50 scripts/bench.sh
# GENV_BIN_DIR / GENV_SIM_LIB_DIR point at other builds (default target/release, target/sim).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GENV_BIN_DIR:-$root/target/release}
sim=${GENV_SIM_LIB_DIR:-$root/target/sim}

for f in "$bin/genv" "$bin/genv-bench" "$sim/libnvidia-ml.so.1"; do
    if [ ! -e "$f" ]; then
        echo "bench: $f is missing; run \`make build\` first" >&2
        exit 1
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/genv-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A clean environment: nothing of an outer genv environment may leak into the timings.
env -u GENV_ENVIRONMENT_ID -u LD_PRELOAD -u GENV_SHIM_PATH \
    GENV_TMPDIR="$work/genv" GENV_SIM_DIR="$work/sim" GENV_SIM_GPUS="${GENV_SIM_GPUS:-4}" \
    LD_LIBRARY_PATH="$sim" \
    "$bin/genv-bench" --envs "${ENVS:-1000}" --runs "${RUNS:-50}" --genv "$bin/genv" "$@"

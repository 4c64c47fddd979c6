#!/usr/bin/env bash
# `make wheel`: one wheel in target/wheels/ with everything a user needs from `pip install`:
# the SDK (genv.sdk, genv.ray, the native module), the genv binary (installed into the venv's
# bin/, so on PATH where the venv is) and the shim's two files (into <venv>/lib/genv/, where
# genv looks from its bin/ — the layout of `make install` — and where genv.sdk looks from
# sys.prefix). Built by maturin from a staging copy of sdk/ whose pyproject adds the wheel's
# data directory; sdk/ itself stays the SDK-only package (`pip install ./sdk`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rel=$root/target/release
maturin=${MATURIN:-$root/.venv/bin/maturin}
stage=$root/target/wheel-stage
for f in genv libgenv_shim.so libgenv_shim_core.so; do
    [ -f "$rel/$f" ] || { echo "build-wheel: $rel/$f missing: run make release" >&2; exit 1; }
done
rm -rf "$stage"
mkdir -p "$stage/data/scripts" "$stage/data/data/lib/genv"
cp -r "$root/sdk/python" "$stage/python"
find "$stage/python" -name __pycache__ -prune -exec rm -rf {} +
cp "$root/sdk/README.md" "$stage/"
# Without debug information: a third of the size, and nothing a user's backtrace needs.
strip --strip-debug -o "$stage/data/scripts/genv" "$rel/genv"
for f in libgenv_shim.so libgenv_shim_core.so; do
    strip --strip-debug -o "$stage/data/data/lib/genv/$f" "$rel/$f"
done
sed -e "s|^manifest-path = .*|manifest-path = \"$root/sdk/Cargo.toml\"|" \
    -e 's|^\[tool.maturin\]|[tool.maturin]\ndata = "data"\nstrip = true|' \
    "$root/sdk/pyproject.toml" > "$stage/pyproject.toml"
grep -q '^data = "data"' "$stage/pyproject.toml"
mkdir -p "$root/target/wheels"
cd "$stage"
log=$stage/maturin.log
if ! "$maturin" build --release --out "$root/target/wheels" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
# The wheel maturin names last.
sed -n 's/.*Built wheel[^/]*\(\/.*\.whl\).*/\1/p' "$log" | tail -n 1

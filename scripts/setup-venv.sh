#!/usr/bin/env bash
# Creates .venv with the Python clients the tests drive (tests/python/requirements.txt), and
# target/py-cuda13 with cuda-bindings 13 (tests/python/requirements-cuda13.txt).
# Re-running is cheap: pip skips what is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${GENV_VENV:-$root/.venv}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
stamp="$venv/.genv-requirements"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$root/tests/python/requirements.txt"; then
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$root/tests/python/requirements.txt"
    cp "$root/tests/python/requirements.txt" "$stamp"
fi
# cuda-bindings 13 cannot share the venv with 12: a --target directory under target/, put in
# front of the venv's packages with PYTHONPATH by the tests that drive it.
cuda13="$root/target/py-cuda13"
stamp13="$cuda13/.genv-requirements"
if [ ! -f "$stamp13" ] || ! cmp -s "$stamp13" "$root/tests/python/requirements-cuda13.txt"; then
    rm -rf "$cuda13"
    "$venv/bin/pip" install --disable-pip-version-check -q --target "$cuda13" \
        -r "$root/tests/python/requirements-cuda13.txt"
    cp "$root/tests/python/requirements-cuda13.txt" "$stamp13"
fi
# The SDK (genv.sdk), built from sdk/ by maturin; rebuilt only when its sources change.
sdk_stamp="$venv/.genv-sdk"
sdk_sum=$(cd "$root" && find sdk/src sdk/python sdk/Cargo.toml sdk/pyproject.toml state/src state/Cargo.toml \
    -type f -not -name '*.pyc' | LC_ALL=C sort | xargs sha256sum | sha256sum)
if [ ! -f "$sdk_stamp" ] || [ "$(cat "$sdk_stamp")" != "$sdk_sum" ]; then
    # The venv's maturin (requirements.txt), found on PATH by its build backend; no download.
    PATH="$venv/bin:$PATH" "$venv/bin/pip" install --disable-pip-version-check -q --no-build-isolation \
        --force-reinstall --no-deps "$root/sdk"
    echo "$sdk_sum" > "$sdk_stamp"
fi
echo "$venv"

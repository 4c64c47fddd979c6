#!/usr/bin/env bash
# Creates .venv with the Python clients the tests drive (tests/python/requirements.txt).
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
echo "$venv"

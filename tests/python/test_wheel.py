"""The wheel of `make wheel` (scripts/build-wheel.sh), built here and installed into a fresh venv:
`genv` on the venv's PATH, its shim found by genv and by genv.sdk without any variable, and a
program under `genv exec` from it enforced (the environment's device count and capacity)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

CUDA_VIEW = r"""
import ctypes, os
c = ctypes.CDLL("libcuda.so.1")
assert c.cuInit(0) == 0
n = ctypes.c_int(); c.cuDeviceGetCount(ctypes.byref(n))
d = ctypes.c_int(); c.cuDeviceGet(ctypes.byref(d), 0)
t = ctypes.c_size_t(); c.cuDeviceTotalMem_v2(ctypes.byref(t), d)
print(n.value, t.value, os.environ["LD_PRELOAD"])
"""


def build_wheel() -> Path:
    maturin = Path(sys.executable).parent / "maturin"
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-wheel.sh")],
        env={**os.environ, "MATURIN": str(maturin)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    wheel = Path(out.stdout.strip().splitlines()[-1])
    assert wheel.is_file(), out.stdout
    return wheel


def test_wheel_installs_cli_shim_and_sdk(tmp_path, sim):
    wheel = build_wheel()
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("genv/sdk.py", "genv/ray.py"):
        assert want in names, names
    data = [n for n in names if ".data/" in n]
    assert any(n.endswith(".data/scripts/genv") for n in data), data
    for lib in ("libgenv_shim.so", "libgenv_shim_core.so"):
        assert any(n.endswith(f".data/data/lib/genv/{lib}") for n in data), data

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    bin_genv = venv / "bin" / "genv"
    assert os.access(bin_genv, os.X_OK)
    shim = (venv / "lib" / "genv" / "libgenv_shim.so").resolve()
    assert (venv / "lib" / "genv" / "libgenv_shim_core.so").is_file()

    # The venv's python alone (its bin/ not on PATH) finds the wheel's shim.
    env = {k: v for k, v in sim.env.items() if k not in ("GENV_SHIM_PATH", "LD_PRELOAD")}
    env.update(GENV_TMPDIR=str(tmp_path / "genv"), GENV_CONFIG="", PATH="/usr/bin:/bin")
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import genv.sdk; print(genv.sdk.shim_path())"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(shim)

    # With the venv on PATH (activated), `genv` is the wheel's, and a program it runs is under
    # the wheel's shim: one device of the environment's capacity.
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    out = subprocess.run(
        ["sh", "-c", 'command -v genv && genv exec --gpus 1 --gpu-memory 1gi -- python -c "$0"', CUDA_VIEW],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    where, view = out.stdout.strip().splitlines()
    assert where == str(bin_genv)
    assert view == f"1 {1 << 30} {shim}"

    # The SDK from the wheel activates and starts children under its shim.
    code = (
        "import genv.sdk, subprocess\n"
        "with genv.sdk.activate(config=genv.sdk.Env.Config(gpus=1)):\n"
        "    print(genv.sdk.attached())\n"
        "    print(subprocess.run(['sh', '-c', 'echo $LD_PRELOAD'], capture_output=True, text=True).stdout.strip())\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-W", "ignore", "-c", code],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0]", str(shim)]

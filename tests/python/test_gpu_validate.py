"""scripts/gpu-validate.sh, as far as it runs without a GPU: `--sim` runs it on the simulated
machine (the checks that need the real CUDA runtime are skipped, with the reason), with the
prebuilt binaries of a directory and the machine's python3, and writes its summary file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN_DIR, ROOT, SHIM, require_built

SCRIPT = ROOT / "scripts" / "gpu-validate.sh"


def run(*args, env=None, timeout=300):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("GENV_", "CUDA_"))}
    e.pop("LD_PRELOAD", None)
    e.update(env or {})
    return subprocess.run(["bash", SCRIPT, *map(str, args)], env=e, capture_output=True,
                          text=True, timeout=timeout)


def test_sim_run_writes_the_summary(tmp_path):
    require_built(SHIM, BIN_DIR / "genv")
    smi = ROOT / "target" / "nvidia-smi-550" / "usr" / "bin" / "nvidia-smi"
    if not os.access(smi, os.X_OK):
        pytest.skip(f"{smi} missing: run scripts/fetch-nvidia-smi.sh")
    out = tmp_path / "out"
    p = run("--sim", "--out", out, BIN_DIR, env={"GENV_SIM_DRIVER": "550"})
    assert p.returncode == 0, p.stdout + p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["simulated"] is True and s["driver"].startswith("550.") and s["failed"] == 0
    checks = {c["name"]: c for c in s["checks"]}
    modes = ["default table", "-L", "--query-gpu", "--query-compute-apps", "-q", "-i <bus id>",
             "outside the environment"]
    for m in modes:
        assert checks[f"nvidia-smi {m}"]["status"] == "pass", checks[f"nvidia-smi {m}"]
    assert checks["two processes share the capacity"]["status"] == "pass"
    for gpu_only in ("pytorch", "pytorch expandable_segments", "cupy", "jax",
                     "training step overhead"):
        assert checks[gpu_only]["status"] == "skip" and "CUDA runtime" in checks[gpu_only]["detail"]
    # The driver's table as probed, with its process records' layout, and the shim's reading.
    t = s["export_table"]
    assert t["size"] == "0x7d8" and t["slots"] == 251
    assert t["slot213"]["record_size"] == 0x1020 and t["slot213"]["name_offset"] == 0x20
    assert "driver 550's layout" in checks["export table"]["detail"]
    # One line per check on stdout, the same as the summary.
    lines = [line for line in p.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert len(lines) == len(s["checks"])


def test_needs_the_binaries(tmp_path):
    p = run("--sim", tmp_path)
    assert p.returncode != 0 and "genv missing" in p.stderr
    p = run()
    assert p.returncode != 0 and "BIN_DIR" in p.stderr


def test_is_clean_shell():
    assert subprocess.run(["bash", "-n", SCRIPT]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (bash -n passed)")
    p = subprocess.run(["shellcheck", SCRIPT], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout

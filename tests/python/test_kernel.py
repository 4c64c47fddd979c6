"""`genv kernel install` with the real jupyter_client: the kernelspec it writes starts a kernel
in a fresh environment (under the shim: the configured device count and capacity), listed by
`genv envs` while it runs and gone when the kernel is shut down."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from conftest import GENV, SHIM, require_built

CELL = r"""
import ctypes, os
c = ctypes.CDLL("libcuda.so.1")
assert c.cuInit(0) == 0
n = ctypes.c_int(); c.cuDeviceGetCount(ctypes.byref(n))
d = ctypes.c_int(); c.cuDeviceGet(ctypes.byref(d), 0)
t = ctypes.c_size_t(); c.cuDeviceTotalMem_v2(ctypes.byref(t), d)
print(n.value, t.value, os.environ["GENV_ENVIRONMENT_NAME"], os.environ["GENV_GPUS"])
"""


def envs(env) -> list:
    out = subprocess.run([str(GENV), "envs", "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_kernel_runs_in_its_own_environment(tmp_path, sim):
    require_built(GENV, SHIM)
    data = tmp_path / "jupyter"
    env = dict(sim.env)
    env.update(GENV_TMPDIR=str(tmp_path / "genv"), GENV_CONFIG="", JUPYTER_DATA_DIR=str(data))
    env.pop("GENV_ENVIRONMENT_ID", None)
    env.pop("LD_PRELOAD", None)
    out = subprocess.run(
        [str(GENV), "kernel", "install", "--name", "gpu-nb", "--gpus", "1", "--gpu-memory", "1gi",
         "--python", sys.executable],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    kdir = data / "kernels" / "gpu-nb"
    assert out.stdout.strip() == str(kdir)
    spec = json.loads((kdir / "kernel.json").read_text())
    assert spec["argv"][:2] == [str(GENV), "exec"]
    assert spec["display_name"] == "Python (genv gpu-nb: 1 GPU, 1gi)"

    ksm = KernelSpecManager(kernel_dirs=[str(data / "kernels")])
    assert "gpu-nb" in ksm.find_kernel_specs()
    km = KernelManager(kernel_name="gpu-nb", kernel_spec_manager=ksm)
    km.start_kernel(env=env, cwd=str(tmp_path))
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        printed = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                printed.append("\n".join(msg["content"]["traceback"]))

        reply = kc.execute_interactive(CELL, timeout=120, output_hook=hook)
        assert reply["content"]["status"] == "ok", printed
        assert "".join(printed).split() == ["1", str(1 << 30), "gpu-nb", "1"]
        running = envs(env)
        assert [e["name"] for e in running] == ["gpu-nb"], running
        assert running[0]["attached"] == [0]
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=False)
    deadline = time.monotonic() + 20
    while envs(env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert envs(env) == []

    # Uninstall removes only what genv wrote.
    out = subprocess.run([str(GENV), "kernel", "uninstall", "--name", "gpu-nb"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert not kdir.exists()
    out = subprocess.run([str(GENV), "kernel", "uninstall", "--name", "gpu-nb"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    # A name Jupyter would not take is one line, nothing written.
    out = subprocess.run([str(GENV), "kernel", "install", "--name", "a b"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "invalid kernel name 'a b'" in out.stderr, out.stderr
    assert not (data / "kernels" / "a b").exists()

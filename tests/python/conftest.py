"""Shared fixtures: an isolated simulated GPU machine for real clients to run against.

`sim` gives each test a fresh machine: its own GENV_SIM_DIR (so no memory ledger is shared with
other tests or with a developer's /tmp/genv-sim), the test-double libcuda / libnvidia-ml first
on LD_LIBRARY_PATH, stock nvidia-smi and the venv's client scripts on PATH. The clients dlopen
the libraries themselves, so everything that should see the machine runs in a child process
started with `sim.env`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM_LIB_DIR = ROOT / "target" / "sim"
NVIDIA_SMI_DIR = ROOT / "target" / "nvidia-smi" / "usr" / "bin"
NVIDIA_SMI = NVIDIA_SMI_DIR / "nvidia-smi"
LIBCUDA = SIM_LIB_DIR / "libcuda.so.1"
LIBNVML = SIM_LIB_DIR / "libnvidia-ml.so.1"
# Where genv and the shim were built (`make build` puts them in target/release). Absolute:
# children may run from another directory.
BIN_DIR = Path(os.environ.get("GENV_TEST_BIN_DIR", ROOT / "target" / "release")).resolve()
GENV = BIN_DIR / "genv"
SHIM = BIN_DIR / "libgenv_shim.so"

DEFAULT_GPUS = "4"
DEFAULT_GPU_MEMORY = "81559mi"

# Held by a child until its stdin closes: allocates device memory through libcuda (the
# simulated one is the only writer of the memory ledger NVML reads; under the shim, through
# the shim). Argument pairs: CUDA ordinal and bytes (0: a context only).
HOLD_SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
def check(ret, what):
    if ret != 0:
        print(f"error {what} {ret}", flush=True)
        sys.exit(1)
check(cuda.cuInit(0), "cuInit")
args = [int(a) for a in sys.argv[1:]]
for ordinal, size in zip(args[::2], args[1::2]):
    dev = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(dev), ordinal), "cuDeviceGet")
    ctx = ctypes.c_void_p()
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    ptr = ctypes.c_uint64()
    if size:
        check(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(size)), "cuMemAlloc_v2")
print("ready", flush=True)
sys.stdin.read()
"""


def require_built(*files: Path) -> None:
    """Fails the test when a build output it needs is missing."""
    for f in files:
        if not f.exists():
            pytest.fail(f"{f} missing: run `make build` (or set GENV_TEST_BIN_DIR)")


class Sim:
    """One simulated machine: its directory, environment, and the children started on it."""

    def __init__(self, sim_dir: Path):
        self.root = ROOT
        self.dir = sim_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENV_SIM_")}
        # A developer's own device selection must not leak into the simulated machine.
        for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES"):
            env.pop(k, None)
        ld = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(SIM_LIB_DIR) + (":" + ld if ld else "")
        env["GENV_SIM_DIR"] = str(sim_dir)
        env["GENV_SIM_GPUS"] = DEFAULT_GPUS
        env["GENV_SIM_GPU_MEMORY"] = DEFAULT_GPU_MEMORY
        # nvidia-smi, then this interpreter's scripts (gpustat, nvitop) before anything else.
        env["PATH"] = os.pathsep.join(
            [str(NVIDIA_SMI_DIR), str(Path(sys.executable).parent), env.get("PATH", "")]
        )
        self.env = env
        self._children: list[subprocess.Popen] = []

    def run(self, *cmd, env=None, check=True, timeout=120, **kwargs) -> subprocess.CompletedProcess:
        """Runs a command on the machine; text output; fails the test on a non-zero exit
        unless check=False. `env` entries are added to (or, when None, removed from) sim.env."""
        p = subprocess.run(
            [str(c) for c in cmd],
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and p.returncode != 0:
            pytest.fail(
                f"{' '.join(map(str, cmd))} exited {p.returncode}\n"
                f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
            )
        return p

    def python(self, code: str, *args, **kwargs) -> subprocess.CompletedProcess:
        """Runs Python code in a child of this interpreter on the machine."""
        return self.run(sys.executable, "-c", code, *args, **kwargs)

    def nvidia_smi(self, *args, **kwargs) -> subprocess.CompletedProcess:
        """Runs stock nvidia-smi (skips the test when scripts/fetch-nvidia-smi.sh has not run)."""
        if not os.access(NVIDIA_SMI, os.X_OK):
            pytest.skip(f"{NVIDIA_SMI} missing: run scripts/fetch-nvidia-smi.sh")
        return self.run(NVIDIA_SMI, *args, **kwargs)

    def spawn(self, *cmd, env=None, **kwargs) -> subprocess.Popen:
        """Starts a child on the machine; it is killed when the test ends."""
        p = subprocess.Popen([str(c) for c in cmd], env=self._env(env), **kwargs)
        self._children.append(p)
        return p

    def hold_memory(self, ordinal: int, size: int, env=None, timeout: float = 30) -> subprocess.Popen:
        """Starts a process that holds `size` bytes on CUDA device `ordinal` through the
        simulated libcuda and returns once the memory is taken (skips without libcuda)."""
        if not LIBCUDA.exists():
            pytest.skip(f"{LIBCUDA} missing: the simulated libcuda is not built")
        p = self.spawn(
            sys.executable,
            "-c",
            HOLD_SCRIPT,
            str(ordinal),
            str(size),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.1)
            if ready:
                line = p.stdout.readline()
                if line.strip() == "ready":
                    return p
                pytest.fail(f"memory holder: {line.strip()} {p.stderr.read() if p.poll() is not None else ''}")
            if p.poll() is not None:
                pytest.fail(f"memory holder exited {p.returncode}: {p.stderr.read()}")
        pytest.fail("memory holder did not get its memory in time")

    def _env(self, extra):
        if not extra:
            return self.env
        env = dict(self.env)
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def close(self):
        for p in self._children:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture
def sim(tmp_path):
    """A fresh simulated machine (4 x H100 80GB unless GENV_SIM_* entries are overridden)."""
    s = Sim(tmp_path / "genv-sim")
    try:
        yield s
    finally:
        s.close()

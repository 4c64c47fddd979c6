"""The CUDA driver inside a genv environment, seen by unmodified Python clients: cuda-bindings
(which reaches every entry point through cuGetProcAddress_v2) and numba-cuda at driver level.
`genv exec --gpus 2 --gpu-memory …` runs each client with the shim preloaded; outside any
environment nothing changes.
"""

from __future__ import annotations

import json
import sys

import pytest

from conftest import GENV, LIBCUDA, ROOT, SHIM, require_built

MIB = 1 << 20
GIB = 1 << 30

CUDA_BINDINGS = r"""
import json
from cuda.bindings import driver as cu
E = cu.CUresult
(err,) = cu.cuInit(0)
assert err == E.CUDA_SUCCESS, err
err, n = cu.cuDeviceGetCount()
devs = []
for i in range(n):
    err, d = cu.cuDeviceGet(i)
    err, u = cu.cuDeviceGetUuid(d)
    err, tot = cu.cuDeviceTotalMem(d)
    b = bytes(u.bytes)
    uuid = "GPU-" + "-".join(b[a:z].hex() for a, z in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 16)))
    devs.append([uuid, tot])
err, d0 = cu.cuDeviceGet(0)
err, ctx = cu.cuDevicePrimaryCtxRetain(d0)
cu.cuCtxSetCurrent(ctx)
err, free0, total0 = cu.cuMemGetInfo()
ptrs = []
while True:
    err, p = cu.cuMemAlloc(256 << 20)
    if err != E.CUDA_SUCCESS:
        break
    ptrs.append(p)
last = err.name
err, free1, total1 = cu.cuMemGetInfo()
for p in ptrs:
    cu.cuMemFree(p)
err, free2, _ = cu.cuMemGetInfo()
print(json.dumps(dict(count=n, devs=devs, info0=[free0, total0], allocs=len(ptrs), err=last,
                      info1=[free1, total1], free2=free2)))
"""

NUMBA = r"""
import gc, json
import numpy as np
from numba import cuda
from numba.cuda.cudadrv.driver import CudaAPIError
n = len(cuda.gpus)
ctx = cuda.current_context()
free0, total0 = ctx.get_memory_info()
back = cuda.to_device(np.arange(1000, dtype=np.int64)).copy_to_host()
held, err = [], None
try:
    while True:
        held.append(cuda.device_array(64 << 20, dtype=np.uint8))
except CudaAPIError as e:
    err = int(e.code)
free1, total1 = ctx.get_memory_info()
count = len(held)
held.clear()
gc.collect()
ctx.deallocations.clear()
free2, _ = ctx.get_memory_info()
print(json.dumps(dict(count=n, info0=[free0, total0], roundtrip=int(back.sum()), held=count,
                      err=err, info1=[free1, total1], free2=free2)))
"""


@pytest.fixture(autouse=True)
def _built():
    require_built(LIBCUDA, GENV, SHIM)


def host_uuids(sim):
    out = sim.python(CUDA_BINDINGS, env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}).stdout
    return [d[0] for d in json.loads(out)["devs"]]


def genv_exec(sim, tmp_path, args, code, env=None):
    p = sim.run(GENV, "exec", *args, "--", sys.executable, "-c", code,
                env={"GENV_TMPDIR": tmp_path / "genv", **(env or {})})
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_cuda_bindings_sees_the_environment(sim, tmp_path):
    pytest.importorskip("cuda.bindings")
    hosts = host_uuids(sim)
    # CUDA orders the simulated GPUs in reverse; the environment's order is its attach order.
    out = genv_exec(sim, tmp_path, ["--gpus", "2", "--gpu-memory", "1gi"], CUDA_BINDINGS,
                    env={"GENV_SIM_CUDA_ORDER": "reverse"})
    assert out["count"] == 2
    assert [d[0] for d in out["devs"]] == hosts[:2]
    assert all(d[1] == GIB for d in out["devs"])
    assert out["info0"] == [GIB, GIB]
    assert out["allocs"] == 4 and out["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert out["info1"] == [0, GIB]
    assert out["free2"] == GIB


def test_cuda_bindings_outside_unchanged(sim, tmp_path):
    pytest.importorskip("cuda.bindings")
    p = sim.python(CUDA_BINDINGS, env={"LD_PRELOAD": SHIM, "GENV_TMPDIR": tmp_path / "genv",
                                       "GENV_SIM_GPU_MEMORY": "2gi"})
    out = json.loads(p.stdout)
    assert out["count"] == 4
    assert out["devs"][0][1] == 2 * GIB
    # It allocated until the whole simulated device was full.
    assert out["allocs"] == 8


# cuda-bindings 13, apart from the venv's 12 (scripts/setup-venv.sh), against a driver reporting
# CUDA 13.0: it asks cuGetProcAddress_v2 for CUDA 13 versions of every entry point.
CUDA13 = ROOT / "target" / "py-cuda13"

# After CUDA_BINDINGS (the primary context of device 0 is current): the client's and driver's
# versions, and two entry points whose CUDA 13 default is a `_v2` taking a context.
CUDA13_EXTRA = r"""
from cuda import bindings
err, version = cu.cuDriverGetVersion()
err, dev = cu.cuCtxGetDevice_v2(ctx)
(sync,) = cu.cuCtxSynchronize_v2(ctx)
print(json.dumps(dict(bindings=bindings.__version__, driver=version, dev=[err.name, int(dev)],
                      sync=sync.name)))
"""


def cuda13_env(**extra):
    if not (CUDA13 / "cuda" / "bindings").is_dir():
        pytest.skip(f"{CUDA13} missing: run scripts/setup-venv.sh")
    return {"PYTHONPATH": CUDA13, "GENV_SIM_CUDA_VERSION": "13000", **extra}


def test_cuda_bindings_13_sees_the_environment(sim, tmp_path):
    hosts = host_uuids(sim)
    p = sim.run(GENV, "exec", "--gpus", "2", "--gpu-memory", "1gi", "--", sys.executable, "-c",
                CUDA_BINDINGS + CUDA13_EXTRA,
                env={"GENV_TMPDIR": tmp_path / "genv", **cuda13_env(GENV_SIM_CUDA_ORDER="reverse")})
    first, last = (json.loads(line) for line in p.stdout.strip().splitlines()[-2:])
    assert last["bindings"].startswith("13.") and last["driver"] == 13000, last
    assert last["dev"] == ["CUDA_SUCCESS", 0] and last["sync"] == "CUDA_SUCCESS", last
    assert first["count"] == 2
    assert [d[0] for d in first["devs"]] == hosts[:2]
    assert all(d[1] == GIB for d in first["devs"])
    assert first["info0"] == [GIB, GIB]
    assert first["allocs"] == 4 and first["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert first["info1"] == [0, GIB]
    assert first["free2"] == GIB


def test_cuda_bindings_13_outside_unchanged(sim, tmp_path):
    p = sim.python(CUDA_BINDINGS + CUDA13_EXTRA, env=cuda13_env(
        LD_PRELOAD=SHIM, GENV_TMPDIR=tmp_path / "genv", GENV_SIM_GPU_MEMORY="2gi"))
    first, last = (json.loads(line) for line in p.stdout.strip().splitlines()[-2:])
    assert last["bindings"].startswith("13.") and last["driver"] == 13000
    assert first["count"] == 4 and first["devs"][0][1] == 2 * GIB and first["allocs"] == 8


def test_cuda_bindings_12_against_a_12_driver(sim):
    # The venv's own client, against the default driver: CUDA 12.x.
    p = sim.python("from cuda import bindings; from cuda.bindings import driver as cu; "
                   "cu.cuInit(0); print(bindings.__version__, cu.cuDriverGetVersion()[1])")
    version, driver = p.stdout.split()
    assert version.startswith("12.") and 12000 <= int(driver) < 13000


def test_numba_driver_level(sim, tmp_path):
    pytest.importorskip("numba.cuda")
    out = genv_exec(sim, tmp_path, ["--gpus", "2", "--gpu-memory", "512mi"], NUMBA)
    assert out["count"] == 2
    assert out["info0"] == [512 * MIB, 512 * MIB]
    assert out["roundtrip"] == sum(range(1000))
    # 512 MiB in 64 MiB arrays: 8 fit (on OUT_OF_MEMORY numba frees the round trip's pending
    # array and retries), the 9th is refused with CUDA_ERROR_OUT_OF_MEMORY.
    assert out["held"] == 8 and out["err"] == 2
    assert out["info1"] == [0, 512 * MIB]
    assert out["free2"] == 512 * MIB

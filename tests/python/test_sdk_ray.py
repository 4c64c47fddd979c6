"""genv.ray: Ray tasks in their own environments, fractional GPUs turned into memory capacities
enforced by the shim. A local Ray cluster on the simulated machine (one GPU for Ray)."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest

from conftest import GENV, SHIM, require_built
from test_sdk import G

pytest.importorskip("ray", reason="ray not installed (tests/python/requirements.txt)")

# Two concurrent half-GPU tasks on GPU 0. Each allocates 30 GiB of its ~39.8 GiB share, waits for
# the other (so both hold memory at once), then the greedy one asks for 15 GiB more (over its
# share) and the modest one for 5 GiB (within it).
DRIVER = r"""
import json, os, sys, time
import ray, genv.ray

barrier = sys.argv[1]
ray.init(num_gpus=1, num_cpus=2, include_dashboard=False, log_to_driver=False)

@genv.ray.remote(num_gpus=0.5)
def task(tag, more):
    import ctypes, os, time, genv.sdk as s
    GiB = 1 << 30
    cuda = ctypes.CDLL("libcuda.so.1")
    def call(f, *a):
        return int(getattr(cuda, f)(*a))
    dev = ctypes.c_int()
    ctx = ctypes.c_void_p()
    out = {"tag": tag, "eid": s.eid(), "attached": list(s.attached()),
           "config": [s.configuration().name, s.configuration().gpus, s.configuration().gpu_memory],
           "shim_in_worker": "libgenv_shim.so" in open("/proc/self/maps").read()}
    out["init"] = [call("cuInit", 0), call("cuDeviceGet", ctypes.byref(dev), 0),
                   call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev), call("cuCtxSetCurrent", ctx)]
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    call("cuMemGetInfo_v2", ctypes.byref(free), ctypes.byref(total))
    out["total"] = total.value
    p1, p2 = ctypes.c_uint64(), ctypes.c_uint64()
    out["first"] = call("cuMemAlloc_v2", ctypes.byref(p1), ctypes.c_size_t(30 * GiB))
    open(os.path.join(barrier, tag), "w").close()
    deadline = time.time() + 60
    while len(os.listdir(barrier)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    out["both_held"] = len(os.listdir(barrier)) == 2
    out["second"] = call("cuMemAlloc_v2", ctypes.byref(p2), ctypes.c_size_t(more * GiB))
    time.sleep(0.5)  # keep holding while the other task allocates
    return out

results = ray.get([task.remote("greedy", 15), task.remote("modest", 5)], timeout=300)
print(json.dumps(results), flush=True)
ray.shutdown()
"""


def test_two_half_gpu_tasks_share_one_device_each_capped(sim, tmp_path):
    g = G(sim, tmp_path / "genv")
    require_built(GENV, SHIM)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Ray's socket paths must stay under 108 bytes: a short directory of its own.
    ray_tmp = tempfile.mkdtemp(prefix="genv-ray-", dir="/tmp")
    try:
        p = g.py(DRIVER, barrier, env={"RAY_ADDRESS": None, "RAY_USAGE_STATS_ENABLED": "0",
                                       "RAY_AUTH_MODE": "disabled", "GENV_SIM_GPUS": "1",
                                       "TMPDIR": ray_tmp}, timeout=400)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    results = {r["tag"]: r for r in json.loads(p.stdout.strip().splitlines()[-1])}
    total = 81559 << 20
    half = total // 2
    for tag, r in results.items():
        assert r["shim_in_worker"], r
        assert r["eid"].startswith("ray-") and r["attached"] == [0], r
        assert r["config"] == ["ray:task", 1, str(half)], r
        assert r["init"] == [0, 0, 0, 0], r
        # The shim shows the task its share as the device's total memory.
        assert r["total"] == half, r
        assert r["first"] == 0 and r["both_held"], r
    assert results["greedy"]["eid"] != results["modest"]["eid"]
    # Over its share: CUDA_ERROR_OUT_OF_MEMORY (2); the other task is unaffected.
    assert results["greedy"]["second"] == 2, results["greedy"]
    assert results["modest"]["second"] == 0, results["modest"]
    # The tasks' environments ended with their workers (max_calls=1).
    assert [e for e in g.envs() if e["eid"].startswith("ray-")] == []

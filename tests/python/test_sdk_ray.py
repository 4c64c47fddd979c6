"""genv.ray: Ray tasks in their own environments, fractional GPUs turned into memory capacities
enforced by the shim. A local Ray cluster on the simulated machine (one GPU for Ray)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


# --- One environment per task attempt, inside environments, placement, two nodes (issue 10) --------

# A GPU task body: CUDA in the worker (device, an allocation of `gib` GiB), the genv picture, and
# what the task sees of its node. `barrier`, when given, is a directory: the task waits there
# until `wait_for` tasks hold their memory, so that they hold it at once.
TASK = r"""
import ctypes, json, os, socket, sys, time
import ray, genv.ray

def _body(tag, gib, barrier=None, wait_for=0):
    import genv.sdk as s
    from genv import _native
    cuda = ctypes.CDLL("libcuda.so.1")
    call = lambda f, *a: int(getattr(cuda, f)(*a))
    dev, ctx, n = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_int()
    raw = (ctypes.c_ubyte * 16)()
    init = [call("cuInit", 0), call("cuDeviceGetCount", ctypes.byref(n)), call("cuDeviceGet", ctypes.byref(dev), 0),
            call("cuDeviceGetUuid", raw, dev), call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev),
            call("cuCtxSetCurrent", ctx)]
    h = bytes(raw).hex()
    p = ctypes.c_uint64()
    out = {"tag": tag, "eid": s.eid(), "attached": s.attached(), "init": init, "count": n.value,
           "uuid": f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
           "alloc": call("cuMemAlloc_v2", ctypes.byref(p), ctypes.c_size_t(gib << 30)),
           "state": os.environ.get("GENV_TMPDIR"), "node": ray.get_runtime_context().get_node_id(),
           "state_eids": [e["eid"] for e in _native.envs()]}
    if barrier:
        open(os.path.join(barrier, tag), "w").close()
        deadline = time.time() + 120
        while len(os.listdir(barrier)) < wait_for and time.time() < deadline:
            time.sleep(0.05)
        out["together"] = len(os.listdir(barrier)) >= wait_for
    return out

@genv.ray.remote(num_gpus=1)
def whole(tag, gib, barrier=None, wait_for=0):
    return _body(tag, gib, barrier, wait_for)

@genv.ray.remote(num_gpus=0.5)
def half(tag, gib, barrier=None, wait_for=0):
    return _body(tag, gib, barrier, wait_for)

def run(ref):
    try:
        return ray.get(ref, timeout=300)
    except ray.exceptions.RayTaskError as e:
        return {"error": str(e.cause) if getattr(e, "cause", None) else str(e)}
"""


def ray_env(g, ray_tmp, **extra):
    """The variables of a Ray process on the simulated machine: no other cluster reached, no
    usage stats, no token authentication (Ray 2.60 requires one for `ray start` otherwise)."""
    return g.env({"RAY_ADDRESS": None, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                  "TMPDIR": ray_tmp, **extra})


@pytest.fixture
def ray_tmp():
    # Ray's socket paths must stay under 108 bytes: a short directory of its own.
    d = tempfile.mkdtemp(prefix="genv-ray-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_two_independent_ray_instances_get_their_own_environments(sim, tmp_path, ray_tmp):
    # Two drivers on one machine, each its own Ray instance: their first tasks have the same Ray
    # task id. Each half-GPU task takes 30 GiB of its ~39.8 GiB share while the other holds
    # as much: they must not share one environment (and so one capacity).
    g = G(sim, tmp_path / "genv")
    require_built(GENV, SHIM)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    driver = TASK + r"""
ray.init(num_gpus=1, num_cpus=1, include_dashboard=False, log_to_driver=False)
print(json.dumps(run(half.remote(sys.argv[1], 30, sys.argv[2], 2))), flush=True)
ray.shutdown()
"""
    procs = []
    for tag in ("one", "two"):
        tmp = os.path.join(ray_tmp, tag)
        os.mkdir(tmp)
        procs.append(sim.spawn(sys.executable, "-c", driver, tag, barrier, env=ray_env(g, tmp, GENV_SIM_GPUS="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    one, two = results
    assert "error" not in one and "error" not in two, results
    assert one["eid"] != two["eid"], results
    for r in results:
        # ray-<task id>-<random>: within the state's identifier rule (1 to 63 characters).
        assert r["eid"].startswith("ray-") and len(r["eid"]) <= 63, r
        assert r["together"] and r["attached"] == [0] and r["alloc"] == 0, r
    assert [e for e in g.envs() if e["eid"].startswith("ray-")] == []


@pytest.mark.parametrize("enclosing", ["exec", "bash"])
def test_ray_inside_an_environment_runs_tasks_within_it(sim, tmp_path, ray_tmp, enclosing):
    # The driver runs in `genv exec --index 1`, or in a real bash activated and attached to GPU 1,
    # on a two-GPU machine: Ray (started from it) sees the environment's one GPU, and its tasks
    # run in that environment on GPU 1.
    g = G(sim, tmp_path / "genv")
    require_built(GENV, SHIM)
    driver = TASK + r"""
from ray._private.accelerators import get_accelerator_manager_for_resource
import genv.sdk
# What Ray detects when started here (NVML under the shim: the environment's GPUs).
detected = get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators()
ray.init(num_gpus=2, num_cpus=2, include_dashboard=False, log_to_driver=False)
one = run(whole.remote("one", 1))
# Ray believes in 2 GPUs; the environment has 1: a clear refusal, not another GPU.
two = run(whole.options(num_gpus=2).remote("two", 1))
print(json.dumps({"exec": genv.sdk.eid(), "detected": detected, "one": one, "two": two}), flush=True)
ray.shutdown()
"""
    env = ray_env(g, ray_tmp, GENV_SIM_GPUS="2", DRIVER=driver)
    if enclosing == "exec":
        p = sim.run(GENV, "exec", "--index", "1", "--", sys.executable, "-c", driver, env=env, timeout=400)
    else:
        script = f"""set -e
eval "$(genv shell-init bash)"
genv activate --no-prompt
genv attach --index 1 >/dev/null
{sys.executable} -c "$DRIVER"
"""
        p = sim.run("bash", "--norc", "-c", script, env=env, timeout=400)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    uuids = {d["index"]: d["uuid"] for d in g.devices()}
    assert r["detected"] == 1, r
    one = r["one"]
    assert "error" not in one, r
    # The enclosing environment, its GPU 1 (CUDA device 0 of the task), not GPU 0.
    assert one["eid"] == r["exec"] and one["attached"] == [1], one
    assert one["init"] == [0] * 6 and one["count"] == 1 and one["uuid"] == uuids[1], one
    assert one["alloc"] == 0, one
    assert "enclosing environment" in r["two"]["error"] and "has 1 GPU" in r["two"]["error"], r["two"]
    assert g.envs() == []


def start_node(sim, g, log, *args, env):
    """`ray start --block` in its own process group; returns once the node runs."""
    f = open(log, "w")
    p = sim.spawn(Path(sys.executable).parent / "ray", "start", "--block", "--disable-usage-stats",
                  f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                  *args, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text() or "--block" in log.read_text():
            return p
        if p.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"ray start {' '.join(args)} did not start:\n{log.read_text()[-3000:]}")


def stop_node(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    # Whatever Ray left in the node's process group (ours, made by start_new_session).
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_cluster_each_node_its_own_state_and_free_gpus(sim, tmp_path, ray_tmp):
    # Two raylets on one machine, each with its own genv state and simulated machine: node "a"
    # one GPU; node "b" three, of which GPU 0 is held by a genv environment outside Ray, and Ray
    # there may use GPUs 0 and 2 (its CUDA_VISIBLE_DEVICES). Ray on "b" offers one GPU and would
    # send the task to GPU 0; genv.ray places it on GPU 2 (not 1, which is not Ray's).
    require_built(GENV, SHIM)
    ga, gb = G(sim, tmp_path / "genv-a"), G(sim, tmp_path / "genv-b")
    sims = {"a": tmp_path / "sim-a", "b": tmp_path / "sim-b"}
    envs = {
        "a": ray_env(ga, ray_tmp, GENV_SIM_GPUS="1", GENV_SIM_DIR=sims["a"]),
        "b": ray_env(gb, ray_tmp, GENV_SIM_GPUS="3", GENV_SIM_DIR=sims["b"]),
    }
    holder = sim.spawn(GENV, "exec", "--index", "0", "--name", "not-ray", "--", sys.executable, "-c",
                       "import sys; print('held', flush=True); sys.stdin.read()", env=envs["b"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    port = free_port()
    nodes = []
    try:
        nodes.append(start_node(sim, ga, tmp_path / "head.log", "--head", f"--port={port}", "--include-dashboard=false",
                                "--num-cpus=1", "--num-gpus=1",
                                '--resources={"a": 1}', env=envs["a"]))
        nodes.append(start_node(sim, gb, tmp_path / "worker.log", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                "--num-gpus=1", '--resources={"b": 1}',
                                env={**envs["b"], "CUDA_VISIBLE_DEVICES": "0,2"}))
        driver = TASK + r"""
ray.init(address=sys.argv[1], log_to_driver=False)
import subprocess
refs = [whole.options(resources={n: 1}).remote(n, 4, sys.argv[2], 2) for n in ("a", "b")]
out = [run(r) for r in refs]
# Now node a's only GPU is taken outside Ray too: a task there cannot be placed.
blocker = subprocess.Popen(["genv", "exec", "--index", "0", "--name", "blocker", "--", sys.executable, "-c",
                            "import sys; print('held', flush=True); sys.stdin.read()"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert blocker.stdout.readline().strip() == "held"
out.append(run(whole.options(resources={"a": 1}).remote("a-blocked", 1)))
blocker.stdin.close()
blocker.wait()
print(json.dumps(out), flush=True)
"""
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        p = sim.run(sys.executable, "-c", driver, f"127.0.0.1:{port}", barrier, env=envs["a"], timeout=400)
        # The tasks' environments ended with them; the one outside Ray holds its GPU still.
        left = ([e["name"] for e in ga.envs()], [e["name"] for e in gb.envs()])
    finally:
        for n in reversed(nodes):
            stop_node(n)
        holder.stdin.close()
        holder.wait(timeout=30)
    a, b, blocked = json.loads(p.stdout.strip().splitlines()[-1])
    assert "error" not in a and "error" not in b, (a, b)
    assert a["node"] != b["node"] and a["together"] and b["together"], (a, b)
    # Each task in its own node's state, unknown to the other's.
    assert a["state"] == str(ga.state) and b["state"] == str(gb.state), (a, b)
    assert a["eid"] in a["state_eids"] and a["eid"] not in b["state_eids"], (a, b)
    assert b["eid"] in b["state_eids"] and b["eid"] not in a["state_eids"], (a, b)
    assert a["attached"] == [0], a
    # Node b's GPU 0 belongs to "not-ray": the task runs on GPU 2, and CUDA there works.
    assert b["attached"] == [2], b
    assert b["init"] == [0] * 6 and b["count"] == 1 and b["alloc"] == 0, b
    assert left == ([], ["not-ray"]), left
    # One line saying what holds the GPU and what to do.
    err = blocked["error"]
    assert "needs 1 GPU(s) and genv can give 0 on this node" in err, err
    assert "GPU 0: blocker (" in err and "ray start --num-gpus" in err, err

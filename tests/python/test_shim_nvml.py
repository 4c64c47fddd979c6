"""NVML inside a genv environment: unmodified clients (stock nvidia-smi 535, pynvml, gpustat,
nvitop) running with the shim preloaded see only the environment's GPUs, its capacity and its
processes; outside any environment nothing changes.

The environment: GPUs 2 and 3 of the 4-GPU simulated machine (attached in that order, so they
are the environment's GPUs 0 and 1), 4 GiB each. Two of its processes hold 1 GiB on its GPU 0
and 512 MiB on its GPU 1; a process outside it holds 2 GiB on host GPU 2.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GENV, HOLD_SCRIPT as HOLD, LIBCUDA, LIBNVML, NVIDIA_SMI, ROOT, SHIM, require_built

MIB = 1 << 20
GIB = 1 << 30
NAME = "NVIDIA H100 80GB HBM3"
CAP_MIB = 4096

# Runs inside `genv exec`: starts the environment's memory holders, reports them, and keeps the
# environment alive until stdin closes.
ANCHOR = r"""
import json, os, subprocess, sys
hold, plan = sys.argv[1], json.loads(sys.argv[2])
pids = []
for args in plan:
    p = subprocess.Popen([sys.executable, "-c", hold, *map(str, args)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        print(json.dumps({"error": line}), flush=True)
        sys.exit(1)
    pids.append(p.pid)
print(json.dumps({"eid": os.environ["GENV_ENVIRONMENT_ID"], "pids": pids}), flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def _built():
    require_built(LIBNVML, LIBCUDA, GENV, SHIM)


class Env:
    """A running environment: its id, its processes and the variables that put a command in it."""

    def __init__(self, sim, eid: str, pids: list[int], state_dir: Path):
        self.sim = sim
        self.eid = eid
        self.pids = pids
        self.vars = {
            "LD_PRELOAD": SHIM,
            "GENV_ENVIRONMENT_ID": eid,
            "GENV_SHIM_PATH": SHIM,
            "GENV_TMPDIR": state_dir,
        }

    def run(self, *cmd, **kwargs):
        return self.sim.run(*cmd, env={**self.vars, **kwargs.pop("env", {})}, **kwargs)

    def nvidia_smi(self, *args, **kwargs):
        return self.sim.nvidia_smi(*args, env={**self.vars, **kwargs.pop("env", {})}, **kwargs)

    def python(self, code, *args, **kwargs):
        return self.run(sys.executable, "-c", code, *args, **kwargs)


def start_env(sim, state_dir: Path, genv_args: list[str], plan: list[list[int]],
              cli: dict | None = None) -> Env:
    """`genv exec <genv_args> -- <anchor>` holding memory as `plan` says; returns once held.
    `cli`: variables for genv and the environment's processes, on top of sim.env."""
    p = sim.spawn(
        GENV, "exec", *genv_args, "--", sys.executable, "-c", ANCHOR, HOLD, json.dumps(plan),
        env={"GENV_TMPDIR": state_dir, **(cli or {})},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], 0.1)
        if ready:
            line = p.stdout.readline()
            info = json.loads(line) if line.startswith("{") else {"error": line}
            if "error" in info:
                pytest.fail(f"environment did not start: {info['error']} {p.stderr.read()}")
            return Env(sim, info["eid"], info["pids"], state_dir)
        if p.poll() is not None:
            pytest.fail(f"genv exec exited {p.returncode}: {p.stderr.read()}")
    pytest.fail("environment's processes did not get their memory in time")


HOST_FACTS = r"""
import json, pynvml as N
N.nvmlInit()
out = []
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    out.append({"uuid": N.nvmlDeviceGetUUID(h), "serial": N.nvmlDeviceGetSerial(h),
                "bus_id": N.nvmlDeviceGetPciInfo_v3(h).busId})
print(json.dumps(out))
"""


@pytest.fixture
def host(sim):
    """The machine as seen outside any environment: UUID, serial and bus id per NVML index."""
    return json.loads(sim.python(HOST_FACTS).stdout)


@pytest.fixture
def outsider(sim):
    """A process outside any environment holding 2 GiB on host GPU 2."""
    return sim.hold_memory(2, 2 * GIB)


@pytest.fixture
def env23(sim, tmp_path, outsider):
    """GPUs 2 then 3 at 4 GiB; its processes hold 1 GiB on GPU 0 and 512 MiB on GPU 1."""
    return start_env(
        sim,
        tmp_path / "genv",
        ["--index", "2", "--index", "3", "--gpu-memory", "4gi"],
        [[0, GIB], [1, 512 * MIB]],
    )


# --- nvidia-smi -----------------------------------------------------------------------------


def test_smi_table(env23, outsider):
    out = env23.nvidia_smi().stdout
    rows = re.findall(rf"^\|\s+(\d+)\s+{NAME}\s", out, re.M)
    assert rows == ["0", "1"], out
    assert out.count(f"/  {CAP_MIB}MiB") + out.count(f"/ {CAP_MIB}MiB") == 2, out
    assert re.search(rf"\b1024MiB /\s+{CAP_MIB}MiB", out), out
    assert re.search(rf"\b512MiB /\s+{CAP_MIB}MiB", out), out
    a, b = env23.pids
    assert re.search(rf"^\|\s+0\s+N/A\s+N/A\s+{a}\s+C\s+.*\s1024MiB \|$", out, re.M), out
    assert re.search(rf"^\|\s+1\s+N/A\s+N/A\s+{b}\s+C\s+.*\s512MiB \|$", out, re.M), out
    assert str(outsider.pid) not in out
    assert "81559MiB" not in out


def test_smi_list_and_queries(env23, host, outsider):
    lines = env23.nvidia_smi("-L").stdout.strip().splitlines()
    assert lines == [
        f"GPU 0: {NAME} (UUID: {host[2]['uuid']})",
        f"GPU 1: {NAME} (UUID: {host[3]['uuid']})",
    ]
    out = env23.nvidia_smi(
        "--query-gpu=index,uuid,memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"
    ).stdout
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]
    assert rows == [
        ["0", host[2]["uuid"], "4096", "1024", "3072"],
        ["1", host[3]["uuid"], "4096", "512", "3584"],
    ]
    out = env23.nvidia_smi(
        "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"
    ).stdout
    apps = sorted(tuple(int(c) for c in line.split(",")) for line in out.strip().splitlines())
    assert apps == sorted([(env23.pids[0], 1024), (env23.pids[1], 512)])


def test_smi_selects_only_attached(env23, host):
    def query(key, check=True):
        return env23.nvidia_smi(
            "--query-gpu=index,uuid", "--format=csv,noheader", "-i", key, check=check
        )

    for key in ("1", host[3]["uuid"], host[3]["bus_id"]):
        assert query(key).stdout.strip() == f"1, {host[3]['uuid']}", key
    # The host's GPU 0 by any name, and an index past the view.
    for key in ("2", host[0]["uuid"], host[0]["bus_id"]):
        p = query(key, check=False)
        assert p.returncode != 0, (key, p.stdout)
        assert host[0]["uuid"] not in p.stdout
        assert "No devices were found" in p.stdout, (key, p.stdout)


def test_smi_detached(sim, tmp_path, outsider):
    if not os.access(NVIDIA_SMI, os.X_OK):
        pytest.skip(f"{NVIDIA_SMI} missing: run scripts/fetch-nvidia-smi.sh")
    p = sim.run(GENV, "exec", "--", NVIDIA_SMI, env={"GENV_TMPDIR": tmp_path / "genv"}, check=False)
    assert "No devices were found" in p.stdout, p.stdout + p.stderr


def test_view_follows_detach(env23, host):
    # The view is re-read when the state changes: no restart needed.
    env23.run(GENV, "detach", "--index", "3")
    assert env23.nvidia_smi("-L").stdout.strip() == f"GPU 0: {NAME} (UUID: {host[2]['uuid']})"
    env23.run(GENV, "detach")
    p = env23.nvidia_smi(check=False)
    assert "No devices were found" in p.stdout, p.stdout


def test_outside_nothing_changes(sim, tmp_path, env23, host, outsider):
    # The shim preloaded without an environment, and a plain process: the whole machine.
    for extra in ({"LD_PRELOAD": SHIM, "GENV_TMPDIR": tmp_path / "genv"}, {}):
        out = sim.nvidia_smi(env=extra).stdout
        assert re.findall(rf"^\|\s+(\d+)\s+{NAME}\s", out, re.M) == ["0", "1", "2", "3"]
        assert out.count("81559MiB") == 4
        assert str(outsider.pid) in out
        assert all(str(p) in out for p in env23.pids)
        listed = sim.nvidia_smi("-L", env=extra).stdout
        assert all(h["uuid"] in listed for h in host)


# --- pynvml ---------------------------------------------------------------------------------

PYNVML = r"""
import ctypes, json, sys, pynvml as N
host = json.loads(sys.argv[1])
def code(f, *a):
    try:
        f(*a)
        return 0
    except N.NVMLError as e:
        return e.value
N.nvmlInit()
lib = N.nvmlLib
out = {"count": N.nvmlDeviceGetCount(), "gpus": []}

class V1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

def raw(fn, h, ty):
    # The sizing protocol by hand: probe with count 0 and no buffer, then fetch.
    n = ctypes.c_uint(0)
    probe = getattr(lib, fn)(h, ctypes.byref(n), None)
    buf = (ty * (n.value + 1))()
    m = ctypes.c_uint(n.value + 1)
    ret = getattr(lib, fn)(h, ctypes.byref(m), buf)
    return [probe, n.value, ret, sorted([p.pid, p.usedGpuMemory] for p in buf[:m.value])]

for i in range(out["count"]):
    h = N.nvmlDeviceGetHandleByIndex(i)
    m1 = N.nvmlDeviceGetMemoryInfo(h)
    m2 = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
    uuid = N.nvmlDeviceGetUUID(h)
    addr = lambda x: ctypes.cast(x, ctypes.c_void_p).value
    out["gpus"].append({
        "index": N.nvmlDeviceGetIndex(h), "name": N.nvmlDeviceGetName(h), "uuid": uuid,
        "same": [addr(f(k)) == addr(h) for f, k in (
            (N.nvmlDeviceGetHandleByUUID, uuid),
            (N.nvmlDeviceGetHandleBySerial, N.nvmlDeviceGetSerial(h)),
            (N.nvmlDeviceGetHandleByPciBusId, N.nvmlDeviceGetPciInfo_v3(h).busId))],
        "v1": [m1.total, m1.used, m1.free], "v2": [m2.total, m2.reserved, m2.used, m2.free],
        "procs": sorted([p.pid, p.usedGpuMemory] for p in N.nvmlDeviceGetComputeRunningProcesses(h)),
        "v1raw": raw("nvmlDeviceGetComputeRunningProcesses", h, V1),
        "v2raw": raw("nvmlDeviceGetComputeRunningProcesses_v2", h, N.c_nvmlProcessInfo_v2_t),
        "v3raw": raw("nvmlDeviceGetComputeRunningProcesses_v3", h, N.c_nvmlProcessInfo_v2_t),
        "graphics": len(N.nvmlDeviceGetGraphicsRunningProcesses(h)),
        "mps": len(N.nvmlDeviceGetMPSComputeRunningProcesses(h)),
        "temp": N.nvmlDeviceGetTemperature(h, 0),
    })
out["outside"] = {
    "index": code(N.nvmlDeviceGetHandleByIndex, 2),
    "uuid": code(N.nvmlDeviceGetHandleByUUID, host[0]["uuid"]),
    "serial": code(N.nvmlDeviceGetHandleBySerial, host[1]["serial"]),
    "bus": code(N.nvmlDeviceGetHandleByPciBusId, host[0]["bus_id"]),
}
N.nvmlShutdown()
print(json.dumps(out))
"""


def test_pynvml_view(env23, host, outsider):
    facts = json.loads(env23.python(PYNVML, json.dumps(host)).stdout)
    assert facts["count"] == 2
    a, b = env23.pids
    cap = CAP_MIB * MIB
    for i, (hi, pid, used) in enumerate(((2, a, GIB), (3, b, 512 * MIB))):
        g = facts["gpus"][i]
        assert g["index"] == i and g["name"] == NAME
        assert g["uuid"] == host[hi]["uuid"]
        assert g["same"] == [True, True, True]
        assert g["v1"] == [cap, used, cap - used]
        assert g["v2"] == [cap, 0, used, cap - used]
        assert g["procs"] == [[pid, used]]
        for v in ("v1raw", "v2raw", "v3raw"):
            assert g[v] == [7, 1, 0, [[pid, used]]], v
        assert g["graphics"] == 0 and g["mps"] == 0
        assert g["temp"] == 33  # passed through
    invalid, not_found = 2, 6
    assert facts["outside"] == {
        "index": invalid, "uuid": not_found, "serial": not_found, "bus": not_found
    }


THREADS = r"""
import sys, threading, pynvml as N
N.nvmlInit()
errors = []
def work():
    try:
        for _ in range(200):
            n = N.nvmlDeviceGetCount()
            for i in range(n):
                h = N.nvmlDeviceGetHandleByIndex(i)
                assert N.nvmlDeviceGetIndex(h) == i
                assert N.nvmlDeviceGetMemoryInfo(h).total == 4 << 30
                assert len(N.nvmlDeviceGetComputeRunningProcesses(h)) == 1
    except Exception as e:  # reported below, with the thread's failure
        errors.append(repr(e))
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(errors[:3] or "ok")
"""


def test_pynvml_threads(env23):
    assert env23.python(THREADS).stdout.strip() == "ok"


def test_free_never_exceeds_device_free(sim, tmp_path, host):
    # A process outside leaves less on the device than the capacity would allow.
    sim.hold_memory(1, 81559 * MIB - 3 * GIB)
    env = start_env(sim, tmp_path / "genv", ["--index", "1", "--gpu-memory", "8gi"], [[0, GIB]])
    facts = json.loads(env.python(PYNVML, json.dumps(host)).stdout)
    assert facts["count"] == 1
    g = facts["gpus"][0]
    assert g["v1"] == [8 * GIB, GIB, 2 * GIB]
    assert g["v2"] == [8 * GIB, 0, GIB, 2 * GIB]


def test_context_only_process_is_listed(sim, tmp_path, outsider):
    # Registered in the ledger only at its first allocation: known by its environment id.
    env = start_env(sim, tmp_path / "genv", ["--index", "2"], [[0, 0]])
    out = env.nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader").stdout
    assert out.strip() == f"{env.pids[0]}, 0 MiB"
    out = env.nvidia_smi("--query-gpu=memory.used,memory.total", "--format=csv,noheader").stdout
    assert out.strip() == "0 MiB, 81559 MiB"  # no capacity set: the physical size


# --- a program linked with -lnvidia-ml ------------------------------------------------------


@pytest.fixture
def nvml_linked(tmp_path):
    """tests/c/nvml_linked.c, linked against the simulated libnvidia-ml (no dlopen, no dlsym)."""
    exe = tmp_path / "nvml_linked"
    p = subprocess.run(
        ["cc", "-O1", "-Wall", "-o", exe, ROOT / "tests" / "c" / "nvml_linked.c",
         f"-L{LIBNVML.parent}", "-lnvidia-ml"],
        capture_output=True, text=True,
    )
    if p.returncode != 0:
        pytest.fail(f"cc: {p.stderr}")
    return exe


def test_linked_program_sees_the_view(env23, host, outsider, nvml_linked):
    # The shim's NVML names are exported, so a linked program binds them; the simulated
    # library's own calls through the global scope (v1 by-index lookup, export table) still
    # reach the real functions.
    a, b = env23.pids
    out = env23.run(nvml_linked, host[0]["uuid"], host[0]["bus_id"]).stdout.splitlines()
    cap = CAP_MIB * MIB
    assert out == [
        "count 0 2 0 2",
        f"gpu 0: index 0 {host[2]['uuid']} same 1 1; mem {cap} {GIB} {cap} {GIB}; procs {a}={GIB}",
        f"gpu 1: index 1 {host[3]['uuid']} same 1 1; mem {cap} {512 * MIB} {cap} {512 * MIB}; "
        f"procs {b}={512 * MIB}",
        "by uuid 6; by bus id 6",  # the host's GPU 0 is not attached: NOT_FOUND
    ]


def test_linked_program_outside(sim, tmp_path, env23, host, outsider, nvml_linked):
    # Preloaded outside an environment, and not preloaded: the whole machine.
    total = 81559 * MIB
    for extra in ({"LD_PRELOAD": SHIM, "GENV_TMPDIR": tmp_path / "genv"}, {}):
        out = sim.run(nvml_linked, host[0]["uuid"], host[0]["bus_id"], env=extra).stdout
        lines = out.splitlines()
        assert lines[0] == "count 0 4 0 4"
        assert f"gpu 2: index 2 {host[2]['uuid']} same 1 1; mem {total} {3 * GIB} " in lines[3]
        assert f"{outsider.pid}={2 * GIB}" in lines[3] and f"{env23.pids[0]}={GIB}" in lines[3]
        assert lines[-1] == "by uuid 0; by bus id 0"


# --- gpustat / nvitop -----------------------------------------------------------------------


def test_gpustat_json(env23, host, outsider):
    data = json.loads(env23.run("gpustat", "--json").stdout)
    gpus = data["gpus"]
    assert [g["index"] for g in gpus] == [0, 1]
    assert [g["uuid"] for g in gpus] == [host[2]["uuid"], host[3]["uuid"]]
    assert [g["memory.total"] for g in gpus] == [CAP_MIB, CAP_MIB]
    assert [g["memory.used"] for g in gpus] == [1024, 512]
    procs = [[(p["pid"], p["gpu_memory_usage"]) for p in g["processes"]] for g in gpus]
    assert procs == [[(env23.pids[0], 1024)], [(env23.pids[1], 512)]]


def test_nvitop_once(env23, outsider):
    p = env23.run("nvitop", "-1")
    both = p.stdout + p.stderr
    assert "Traceback" not in both and "ERROR" not in both, both
    assert len(re.findall(r"H100 80GB HBM3\s+On", p.stdout)) == 2, p.stdout
    assert "79.65GiB" not in p.stdout
    assert str(outsider.pid) not in p.stdout
    for pid in env23.pids:
        assert str(pid) in p.stdout



# --- nvidia-smi's export table, against a driver shape the simulated machine does not have -----


@pytest.fixture
def fake_nvml(tmp_path):
    """tests/c/nvml_shim_fake.c as libnvidia-ml.so.1 (in `fake-nvml/`, and built with
    -DFAKE_CC_V3 in `fake-nvml-cc/`) and its client tests/c/nvml_shim_export.c: the NVML paths
    and driver shapes the simulated machine does not cover."""
    c = ROOT / "tests" / "c"
    plain, cc_v3 = tmp_path / "fake-nvml", tmp_path / "fake-nvml-cc"
    for d in (plain, cc_v3):
        d.mkdir()
    for args in (
        ["-shared", "-fPIC", "-o", plain / "libnvidia-ml.so.1", c / "nvml_shim_fake.c"],
        ["-DFAKE_CC_V3", "-shared", "-fPIC", "-o", cc_v3 / "libnvidia-ml.so.1",
         c / "nvml_shim_fake.c"],
        ["-o", plain / "client", c / "nvml_shim_export.c", "-ldl"],
    ):
        p = subprocess.run(["cc", "-O1", "-Wall", *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.fail(f"cc: {p.stderr}")
    return plain


def test_export_table_535_layout_follows_view(env23, fake_nvml):
    out = env23.run(
        fake_nvml / "client", env={"LD_LIBRARY_PATH": fake_nvml, "FAKE_NVML_TABLE_SIZE": "0x7a8"}
    ).stdout.splitlines()
    assert out[:7] == [
        "count 2",
        "own 0",  # a copy of the driver's table
        "size 0x7a8",
        "index 0: 81 -> 0 0000:38:00.0; 75 -> 0 38",
        "index 1: 81 -> 0 0000:48:00.0; 75 -> 0 48",
        "index 2: 81 -> 2 -; 75 -> 2 00",
        # Handle lists keep only the view's GPUs.
        "gpu set probe 0 2; gpu set 0 2: 0 1",
    ]


def test_export_table_unmeasured_layout_is_served_as_the_newest(env23, fake_nvml):
    # A size no measured driver has (a newer driver's): read as 555's table and only as far as
    # it goes, so nvidia-smi can reach no slot nobody measured; the index slots follow the view.
    p = env23.run(
        fake_nvml / "client",
        env={"LD_LIBRARY_PATH": fake_nvml, "FAKE_NVML_TABLE_SIZE": "0x900", "GENV_LOG": "debug"},
    )
    assert p.stdout.splitlines()[:7] == [
        "count 2",
        "own 0",
        "size 0x7f8",
        "index 0: 81 -> 0 0000:38:00.0; 75 -> 0 38",
        "index 1: 81 -> 0 0000:48:00.0; 75 -> 0 48",
        "index 2: 81 -> 2 -; 75 -> 2 00",
        "gpu set probe 0 2; gpu set 0 2: 0 1",
    ]
    assert "export table has size 0x900, which no measured driver has: served as 555's" in p.stderr


def test_process_lists_follow_driver_layout(env23, fake_nvml, outsider):
    # Host GPU 2 (the environment's 0) runs one process of the environment and the outsider.
    a = env23.pids[0]
    # The outsider first: a record size other than the driver's would misread the second one.
    pids = f"{outsider.pid}:9999,{a}:7777"
    for lib, stride in ((fake_nvml, 24), (fake_nvml.parent / "fake-nvml-cc", 32)):
        out = env23.run(
            fake_nvml / "client", stride, env={"LD_LIBRARY_PATH": lib, "FAKE_NVML_PIDS": pids}
        ).stdout.splitlines()
        # The ledger's figure, not the driver's; only the environment's process.
        assert f"v3 probe 7 1; v3 0 1: {a}={GIB}" in out, (stride, out)
        detail = [line for line in out if line.startswith("detail")]
        if stride == 24:
            assert detail == [f"detail probe 7 1; detail 0 1: {a}={GIB}"]
        else:
            assert detail == []


def test_process_lists_longer_than_the_first_buffer(env23, fake_nvml, outsider):
    # More processes on the GPU than the shim first asks the driver for: it asks again with room.
    a = env23.pids[0]
    pids = ",".join([f"{outsider.pid + 100000 + i}:1" for i in range(14)] + [f"{a}:7777"])
    out = env23.run(
        fake_nvml / "client", env={"LD_LIBRARY_PATH": fake_nvml, "FAKE_NVML_PIDS": pids}
    ).stdout.splitlines()
    assert f"v3 probe 7 1; v3 0 1: {a}={GIB}" in out, out


def test_accounting_shows_the_environment_only(env23, fake_nvml, outsider):
    # Accounting names processes too (nvidia-smi --query-accounted-apps): the environment's only,
    # and another process's record is not found.
    a = env23.pids[0]
    env = {"LD_LIBRARY_PATH": fake_nvml, "FAKE_NVML_PIDS": f"{outsider.pid}:9999,{a}:7777"}
    args = [fake_nvml / "client", "24", outsider.pid, a]
    out = env23.run(*args, env=env).stdout.splitlines()
    assert f"accounting probe 7 1; accounting 0 1: {a}" in out, out
    assert f"stats {outsider.pid} 6" in out and f"stats {a} 0" in out, out


UTILIZATION = r"""
import json, pynvml as N
N.nvmlInit()
out = {}
for name in ("nvmlDeviceGetProcessUtilization", "nvmlDeviceGetProcessesUtilizationInfo"):
    rows = []
    for i in range(N.nvmlDeviceGetCount()):
        try:
            rows.append(sorted(s.pid for s in getattr(N, name)(N.nvmlDeviceGetHandleByIndex(i), 0)))
        except N.NVMLError as e:
            rows.append(e.value)
    out[name] = rows
print(json.dumps(out))
"""


def test_process_utilization_shows_the_environment_only(sim, env23, outsider):
    # Utilisation samples name processes (nvitop, pynvml users): the environment's only, and
    # NOT_FOUND (as the driver answers without samples) where it has none. The detail struct
    # of 550 on, through that generation's library.
    a, b = env23.pids
    gen550 = {"GENV_SIM_DRIVER": 550, "LD_LIBRARY_PATH": f"{LIBNVML.parent / 'nvml-550'}:{LIBNVML.parent}"}
    inside = json.loads(env23.python(UTILIZATION, env=gen550).stdout)
    for name in ("nvmlDeviceGetProcessUtilization", "nvmlDeviceGetProcessesUtilizationInfo"):
        assert inside[name] == [[a], [b]], (name, inside)
    outside = json.loads(sim.python(UTILIZATION, env=gen550).stdout)["nvmlDeviceGetProcessUtilization"]
    not_found = 6
    assert outside[2] == sorted([outsider.pid, a]) and outside[3] == [b] and outside[0] == not_found

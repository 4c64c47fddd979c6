"""Real NVML clients against the simulated libnvidia-ml.so.1: stock nvidia-smi 535, pynvml,
gpustat and nvitop must see the simulated machine's GPUs, memory and processes."""

from __future__ import annotations

import json
import re
import signal

import pytest

from conftest import LIBNVML

NAME = "NVIDIA H100 80GB HBM3"
MIB = 1 << 20
TOTAL_MIB = 81559
UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(autouse=True)
def _built():
    if not LIBNVML.exists():
        pytest.fail(f"{LIBNVML} missing: run `make sim`")


# What pynvml sees, printed as JSON by a child on the machine.
PYNVML_FACTS = r"""
import ctypes, json, pynvml as N
def addr(h):
    return ctypes.cast(h, ctypes.c_void_p).value
N.nvmlInit()
n = N.nvmlDeviceGetCount()
out = {"count": n, "driver": N.nvmlSystemGetDriverVersion(),
       "cuda": N.nvmlSystemGetCudaDriverVersion(), "gpus": []}
for i in range(n):
    h = N.nvmlDeviceGetHandleByIndex(i)
    uuid = N.nvmlDeviceGetUUID(h)
    pci = N.nvmlDeviceGetPciInfo_v3(h)
    m1 = N.nvmlDeviceGetMemoryInfo(h)
    m2 = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
    same = {
        "index": addr(N.nvmlDeviceGetHandleByIndex(i)) == addr(h),
        "uuid": addr(N.nvmlDeviceGetHandleByUUID(uuid)) == addr(h),
        "bus": addr(N.nvmlDeviceGetHandleByPciBusId(pci.busId)) == addr(h),
        "serial": addr(N.nvmlDeviceGetHandleBySerial(N.nvmlDeviceGetSerial(h))) == addr(h),
    }
    out["gpus"].append({
        "index": N.nvmlDeviceGetIndex(h), "name": N.nvmlDeviceGetName(h), "uuid": uuid,
        "bus_id": pci.busId, "bus_id_legacy": pci.busIdLegacy, "bus": pci.bus,
        "total": m1.total, "used": m1.used, "free": m1.free,
        "v2": [m2.total, m2.reserved, m2.used, m2.free], "same_handle": same,
        "cc": list(N.nvmlDeviceGetCudaComputeCapability(h)),
        "mig": list(N.nvmlDeviceGetMigMode(h)), "is_mig": N.nvmlDeviceIsMigDeviceHandle(h),
        "arch": N.nvmlDeviceGetArchitecture(h),
    })
N.nvmlShutdown()
# Some getters hand back ctypes integers.
print(json.dumps(out, default=lambda o: o.value))
"""


def pynvml_facts(sim, **env):
    return json.loads(sim.python(PYNVML_FACTS, env=env).stdout)


def smi_query(sim, fields, *args):
    out = sim.nvidia_smi(f"--query-gpu={fields}", "--format=csv,noheader,nounits", *args).stdout
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]


def used_mib(sim):
    return [int(r[1]) for r in smi_query(sim, "index,memory.used")]


# --- nvidia-smi -----------------------------------------------------------------------------


def test_smi_table(sim):
    out = sim.nvidia_smi().stdout
    assert "Driver Version: 535.261.03" in out
    assert "CUDA Version: 12.2" in out
    rows = re.findall(r"^\|\s+(\d)\s+(NVIDIA H100 80GB HBM3)\s+On\s+\|\s+(\S+)", out, re.M)
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert len({r[2] for r in rows}) == 4, "each GPU has its own bus id"
    assert out.count(f"0MiB / {TOTAL_MIB}MiB") == 4
    assert "No running processes found" in out


def test_smi_list_matches_pynvml(sim):
    lines = sim.nvidia_smi("-L").stdout.strip().splitlines()
    facts = pynvml_facts(sim)
    assert len(lines) == 4
    for i, (line, g) in enumerate(zip(lines, facts["gpus"])):
        assert line == f"GPU {i}: {NAME} (UUID: {g['uuid']})"
        assert UUID_RE.match(g["uuid"])
    assert len({g["uuid"] for g in facts["gpus"]}) == 4
    # The machine is stable: another process sees the same identities.
    assert sim.nvidia_smi("-L").stdout.strip().splitlines() == lines


def test_smi_query_gpu_csv(sim):
    out = sim.nvidia_smi(
        "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free", "--format=csv"
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "index, name, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB]"
    uuids = [g["uuid"] for g in pynvml_facts(sim)["gpus"]]
    assert lines[1:] == [
        f"{i}, {NAME}, {uuids[i]}, {TOTAL_MIB} MiB, 0 MiB, {TOTAL_MIB} MiB" for i in range(4)
    ]


def test_smi_gpu_count_and_memory_from_env(sim):
    two = sim.nvidia_smi("-L", env={"GENV_SIM_GPUS": 2}).stdout.strip().splitlines()
    assert len(two) == 2 and two[1].startswith(f"GPU 1: {NAME}")
    out = sim.nvidia_smi(
        "--query-gpu=memory.total", "--format=csv,noheader", env={"GENV_SIM_GPU_MEMORY": "40gi"}
    ).stdout.split("\n")
    assert [x for x in out if x] == ["40960 MiB"] * 4
    none = sim.nvidia_smi(env={"GENV_SIM_GPUS": 0}, check=False)
    assert none.returncode == 6
    assert "No devices were found" in none.stdout


def test_smi_select_by_index_bus_id_and_uuid(sim):
    facts = pynvml_facts(sim)["gpus"]
    one = sim.nvidia_smi("-i", "1").stdout
    assert re.search(rf"^\|\s+1\s+{NAME}", one, re.M)
    assert facts[1]["bus_id"] in one
    assert all(g["bus_id"] not in one for g in facts if g["index"] != 1)
    assert one.count(f"{TOTAL_MIB}MiB") == 1

    for g in facts:
        for bus in (g["bus_id"], g["bus_id_legacy"]):
            assert smi_query(sim, "index,pci.bus_id", "-i", bus) == [[str(g["index"]), g["bus_id"]]]
        assert smi_query(sim, "index", "-i", g["uuid"]) == [[str(g["index"])]]

    missing = sim.nvidia_smi("-i", "7", check=False)
    assert missing.returncode != 0 and "No devices were found" in missing.stdout
    missing = sim.nvidia_smi("-i", "0000:99:00.0", "-L", check=False)
    assert missing.returncode != 0


def test_smi_query_everything(sim):
    p = sim.nvidia_smi("-q")
    out = p.stdout
    assert re.search(r"^Attached GPUs\s+: 4$", out, re.M)
    assert re.search(r"^Driver Version\s+: 535\.261\.03$", out, re.M)
    assert len(re.findall(rf"^\s+Product Name\s+: {NAME}$", out, re.M)) == 4
    assert len(re.findall(r"^\s+Product Architecture\s+: Hopper$", out, re.M)) == 4
    uuids = {g["uuid"] for g in pynvml_facts(sim)["gpus"]}
    assert set(re.findall(r"^\s+GPU UUID\s+: (\S+)$", out, re.M)) == uuids
    assert len(re.findall(rf"^\s+Total\s+: {TOTAL_MIB} MiB$", out, re.M)) == 4
    # Every function it asks for exists; what the machine lacks reads N/A, never garbage.
    assert "Function Not Found" not in out
    assert "Unknown Error" not in out
    limits = re.findall(r"^\s+Current Power Limit\s+: (.+)$", out, re.M)
    assert limits and set(limits) <= {"700.00 W", "N/A"}


def test_smi_process_list(sim):
    holder = sim.hold_memory(1, 256 * MIB)
    apps = sim.nvidia_smi(
        "--query-compute-apps=pid,process_name,used_memory", "--format=csv"
    ).stdout.strip().splitlines()
    assert apps[0] == "pid, process_name, used_gpu_memory [MiB]"
    rows = [[c.strip() for c in line.split(",")] for line in apps[1:]]
    assert len(rows) == 1
    pid, name, mem = rows[0]
    assert int(pid) == holder.pid
    assert "python" in name
    assert mem == "256 MiB"

    table = sim.nvidia_smi().stdout
    assert re.search(rf"^\|\s+1\s+N/A\s+N/A\s+{holder.pid}\s+C\s+.*python.*\s256MiB \|$", table, re.M)
    assert f"256MiB / {TOTAL_MIB}MiB" in table
    assert used_mib(sim) == [0, 256, 0, 0]


def test_sigkill_releases_memory(sim):
    holder = sim.hold_memory(2, 1024 * MIB)
    assert used_mib(sim) == [0, 0, 1024, 0]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert used_mib(sim) == [0, 0, 0, 0]
    out = sim.nvidia_smi().stdout
    assert "No running processes found" in out
    assert str(holder.pid) not in out


# --- pynvml ---------------------------------------------------------------------------------


def test_pynvml_devices(sim):
    facts = pynvml_facts(sim)
    assert facts["count"] == 4
    assert facts["driver"] == "535.261.03"
    assert facts["cuda"] == 12020
    total = TOTAL_MIB * MIB
    for i, g in enumerate(facts["gpus"]):
        assert g["index"] == i
        assert g["name"] == NAME
        assert g["total"] == total and g["used"] == 0 and g["free"] == total
        assert g["v2"] == [total, 0, 0, total]
        assert all(g["same_handle"].values()), g["same_handle"]
        assert g["bus_id"].endswith(g["bus_id_legacy"][4:])
        assert g["cc"] == [9, 0]
        assert g["mig"] == [0, 0] and g["is_mig"] == 0
        assert g["arch"] == 9  # Hopper
    assert len({g["bus"] for g in facts["gpus"]}) == 4
    assert pynvml_facts(sim, GENV_SIM_GPUS=1)["count"] == 1


ERRORS = r"""
import ctypes, pynvml as N
def code(f, *a):
    try:
        f(*a)
        return 0
    except N.NVMLError as e:
        return e.value
N.nvmlInit()
lib = N.nvmlLib
print(code(N.nvmlDeviceGetHandleByIndex, 4))
print(code(N.nvmlDeviceGetHandleByUUID, b"GPU-00000000-0000-0000-0000-000000000000"))
print(code(N.nvmlDeviceGetHandleByPciBusId, b"0000:99:00.0"))
bogus = ctypes.c_void_p(8)
print(lib.nvmlDeviceGetIndex(bogus, ctypes.byref(ctypes.c_uint())))
print(N.nvmlErrorString(7))
N.nvmlShutdown()
print(code(N.nvmlDeviceGetCount))
# Initialisations are counted: one shutdown per init.
N.nvmlInit(); N.nvmlInit(); N.nvmlShutdown()
print(code(N.nvmlDeviceGetCount))
N.nvmlShutdown()
"""


def test_pynvml_errors(sim):
    lines = sim.python(ERRORS).stdout.split()
    invalid, not_found, uninitialized = "2", "6", "1"
    assert lines[0] == invalid
    assert lines[1] == not_found
    assert lines[2] == not_found
    assert lines[3] == invalid
    assert " ".join(lines[4:6]) == "Insufficient Size"
    assert lines[6] == uninitialized
    assert lines[7] == "0"


PROCESS_PROTOCOL = r"""
import ctypes, json, pynvml as N
N.nvmlInit()
lib = N.nvmlLib
out = {}
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    # Sizing probe: count 0 and no buffer.
    n = ctypes.c_uint(0)
    ret = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(n), None)
    rec = {"probe": [ret, n.value]}
    if ret == N.NVML_ERROR_INSUFFICIENT_SIZE:
        class V1(ctypes.Structure):
            _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]
        assert ctypes.sizeof(V1) == 16 and ctypes.sizeof(N.c_nvmlProcessInfo_v2_t) == 24
        for fn, ty in (("nvmlDeviceGetComputeRunningProcesses", V1),
                       ("nvmlDeviceGetComputeRunningProcesses_v2", N.c_nvmlProcessInfo_v2_t),
                       ("nvmlDeviceGetComputeRunningProcesses_v3", N.c_nvmlProcessInfo_v2_t)):
            # One spare slot, filled with a marker that must survive.
            buf = (ty * (n.value + 1))()
            buf[n.value].pid = 0xDEAD
            m = ctypes.c_uint(n.value + 1)
            ret = getattr(lib, fn)(h, ctypes.byref(m), buf)
            rec[fn] = [ret, m.value, [[p.pid, p.usedGpuMemory] for p in buf[:m.value]],
                       buf[n.value].pid]
        too_small = ctypes.c_uint(0)
        rec["small"] = lib.nvmlDeviceGetComputeRunningProcesses_v2(
            h, ctypes.byref(too_small), (N.c_nvmlProcessInfo_v2_t * 1)())
        rec["instances"] = [[p.gpuInstanceId, p.computeInstanceId]
                            for p in N.nvmlDeviceGetComputeRunningProcesses(h)]
    g = ctypes.c_uint(0)
    rec["graphics"] = [lib.nvmlDeviceGetGraphicsRunningProcesses_v3(h, ctypes.byref(g), None), g.value]
    rec["mps"] = len(N.nvmlDeviceGetMPSComputeRunningProcesses(h))
    rec["used"] = N.nvmlDeviceGetMemoryInfo(h).used
    out[i] = rec
print(json.dumps(out))
"""


def test_pynvml_process_protocol(sim):
    holder = sim.hold_memory(3, 512 * MIB)
    facts = json.loads(sim.python(PROCESS_PROTOCOL).stdout)
    for i in "012":
        assert facts[i]["probe"] == [0, 0], "no processes: success and count 0"
        assert facts[i]["used"] == 0
    d = facts["3"]
    assert d["probe"] == [7, 1], "count 0 / NULL buffer -> INSUFFICIENT_SIZE and the count"
    for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2",
               "nvmlDeviceGetComputeRunningProcesses_v3"):
        ret, count, procs, marker = d[fn]
        assert (ret, count, procs) == (0, 1, [[holder.pid, 512 * MIB]]), fn
        assert marker == 0xDEAD, f"{fn} wrote past the records it reported"
    assert d["small"] == 7
    assert d["instances"] == [[0xFFFFFFFF, 0xFFFFFFFF]]
    assert d["graphics"] == [0, 0] and d["mps"] == 0
    assert d["used"] == 512 * MIB


PYNVML_USED = r"""
import pynvml as N
N.nvmlInit()
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    print(N.nvmlDeviceGetMemoryInfo(h).used, len(N.nvmlDeviceGetComputeRunningProcesses(h)))
"""


def test_pynvml_sigkill_releases_memory(sim):
    holder = sim.hold_memory(0, 3 * MIB)
    assert sim.python(PYNVML_USED).stdout.split() == [str(3 * MIB), "1"] + ["0", "0"] * 3
    holder.kill()
    holder.wait(timeout=10)
    assert sim.python(PYNVML_USED).stdout.split() == ["0", "0"] * 4


# --- gpustat / nvitop -----------------------------------------------------------------------


def test_gpustat_json(sim):
    data = json.loads(sim.run("gpustat", "--json").stdout)
    uuids = [g["uuid"] for g in pynvml_facts(sim)["gpus"]]
    assert data["driver_version"] == "535.261.03"
    assert [g["index"] for g in data["gpus"]] == [0, 1, 2, 3]
    for g, uuid in zip(data["gpus"], uuids):
        assert g["name"] == NAME
        assert g["uuid"] == uuid
        assert g["memory.total"] == TOTAL_MIB and g["memory.used"] == 0
        assert g["temperature.gpu"] == 33
        assert g["processes"] == []


def test_gpustat_shows_process(sim):
    holder = sim.hold_memory(1, 100 * MIB)
    data = json.loads(sim.run("gpustat", "--json").stdout)
    procs = {g["index"]: g["processes"] for g in data["gpus"]}
    assert procs[0] == procs[2] == procs[3] == []
    assert [(p["pid"], p["gpu_memory_usage"]) for p in procs[1]] == [(holder.pid, 100)]
    assert data["gpus"][1]["memory.used"] == 100


def test_nvitop_once(sim):
    p = sim.run("nvitop", "-1")
    both = p.stdout + p.stderr
    assert "Traceback" not in both and "ERROR" not in both
    assert "Driver Version: 535.261.03" in p.stdout
    assert len(re.findall(r"H100 80GB HBM3\s+On", p.stdout)) == 4
    assert p.stdout.count("/ 79.65GiB") == 4


def test_nvitop_shows_process(sim):
    holder = sim.hold_memory(2, 2048 * MIB)
    p = sim.run("nvitop", "-1")
    assert "Traceback" not in p.stdout + p.stderr
    assert re.search(rf"^│\s+2\s+{holder.pid}\s+C\s+\S+\s+2048MiB", p.stdout, re.M), p.stdout

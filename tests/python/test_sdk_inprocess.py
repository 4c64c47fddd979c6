"""genv.sdk.activate() in a process started with the shim preloaded and no environment: the shim
follows each activation and the end of each block from the next CUDA / NVML initialisation on,
also after CUDA and NVML were used before (the simulated libcuda, like the real one, initialises
once per process: the shim then numbers the environment's devices itself)."""

from __future__ import annotations

import json

from conftest import SHIM
from test_sdk import g  # noqa: F401 (the fixture)

# Helpers of the in-process scripts: NVML and CUDA through ctypes, as a framework would.
PRELUDE = r"""
import ctypes, json, os, subprocess, sys, genv.sdk as s
cuda = ctypes.CDLL("libcuda.so.1")
nvml = ctypes.CDLL("libnvidia-ml.so.1")
GiB, MiB = 1 << 30, 1 << 20

class Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

def nvml_view():
    assert nvml.nvmlInit_v2() == 0
    n = ctypes.c_uint()
    assert nvml.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0
    out = []
    for i in range(n.value):
        h, buf, m = ctypes.c_void_p(), ctypes.create_string_buffer(96), Mem()
        assert nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) == 0
        assert nvml.nvmlDeviceGetUUID(h, buf, 96) == 0
        assert nvml.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)) == 0
        out.append([buf.value.decode(), m.total])
    assert nvml.nvmlShutdown() == 0
    return out

def uuid(dev):
    b = (ctypes.c_ubyte * 16)()
    assert cuda.cuDeviceGetUuid(b, dev) == 0
    h = bytes(b).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

def cuda_view():
    assert cuda.cuInit(0) == 0
    n = ctypes.c_int()
    assert cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
    devs = []
    for i in range(n.value):
        d = ctypes.c_int()
        assert cuda.cuDeviceGet(ctypes.byref(d), i) == 0
        devs.append(uuid(d.value))
    d = ctypes.c_int()
    return {"uuids": devs, "past_end": cuda.cuDeviceGet(ctypes.byref(d), n.value)}

def use(ordinal):
    d, c = ctypes.c_int(), ctypes.c_void_p()
    assert cuda.cuDeviceGet(ctypes.byref(d), ordinal) == 0
    assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(c), d) == 0
    assert cuda.cuCtxSetCurrent(c) == 0
    return d.value

def alloc(size):
    p = ctypes.c_uint64()
    return cuda.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(size)), p.value

def mem_info():
    f, t = ctypes.c_size_t(), ctypes.c_size_t()
    assert cuda.cuMemGetInfo_v2(ctypes.byref(f), ctypes.byref(t)) == 0
    return [f.value, t.value]

def uuids_of(indices):
    by_index = {d["index"]: d["uuid"] for d in s._devices()}
    return [by_index[i] for i in indices]
"""


def test_activation_after_cuda_and_nvml_use_and_a_second_one_are_followed(g):
    p = g.py(PRELUDE + r"""
out = {}
# Before any environment: NVML and CUDA initialised on the whole machine, memory taken.
out["before"] = [len(nvml_view()), cuda_view()["uuids"]]
use(3)
out["outside_alloc"] = alloc(3 * GiB)[0]

with s.activate(config=s.Env.Config(gpus=1, gpu_memory="1gi")):
    want = uuids_of(s.attached())
    nv, cu = nvml_view(), cuda_view()
    out["in1"] = {"nvml": nv, "cuda": cu, "want": want}
    use(0)
    out["in1_info"] = mem_info()
    out["in1_over"] = alloc(2 * GiB)[0]
    r, kept = alloc(512 * MiB)
    out["in1_within"] = r
    out["in1_rest"] = [alloc(512 * MiB)[0], alloc(1)[0]]
    # The genv CLI run from here, under the shim and in the environment, sees the machine.
    cli = subprocess.run(["genv", "devices", "--json"], capture_output=True, text=True, check=True)
    out["cli_devices"] = len(json.loads(cli.stdout))

# After the block: the whole machine again, no capacity.
out["after"] = [len(nvml_view()), len(cuda_view()["uuids"])]
use(0)
out["after_info_total"] = mem_info()[1]
out["after_big"] = alloc(4 * GiB)[0]
# Memory reserved in the environment that ended goes back (nothing to give it to now).
out["free_kept"] = cuda.cuMemFree_v2(ctypes.c_uint64(kept))

# A second activation, another configuration.
with s.activate(config=s.Env.Config(gpus=2, gpu_memory="2gi")):
    want = uuids_of(s.attached())
    out["in2"] = {"nvml": nvml_view(), "cuda": cuda_view(), "want": want}
    use(1)
    out["in2_info"] = mem_info()
    out["in2_allocs"] = [alloc(2 * GiB + 1)[0], alloc(2 * GiB)[0], alloc(1)[0]]
    # A context made before the activation on a device outside it: allocations refused.
    outside = [d for d in range(4) if uuid(d) not in want][0]
    c = ctypes.c_void_p()
    out["in2_foreign_ctx"] = cuda.cuDevicePrimaryCtxRetain(ctypes.byref(c), outside)
out["after2"] = [len(nvml_view()), len(cuda_view()["uuids"])]
print(json.dumps(out))
""", env={"LD_PRELOAD": SHIM})
    r = json.loads(p.stdout)
    gib = 1 << 30
    physical = 81559 << 20
    assert r["before"][0] == 4 and len(r["before"][1]) == 4, r
    assert r["outside_alloc"] == 0, r
    in1 = r["in1"]
    assert [u for u, _ in in1["nvml"]] == in1["want"] and len(in1["want"]) == 1, in1
    assert [t for _, t in in1["nvml"]] == [gib], in1
    assert in1["cuda"] == {"uuids": in1["want"], "past_end": 101}, in1
    assert r["in1_info"] == [gib, gib], r
    assert r["in1_over"] == 2 and r["in1_within"] == 0, r
    assert r["in1_rest"] == [0, 2], r
    assert r["cli_devices"] == 4, r
    assert r["after"] == [4, 4], r
    assert r["after_info_total"] == physical, r
    assert r["after_big"] == 0 and r["free_kept"] == 0, r
    in2 = r["in2"]
    assert len(in2["want"]) == 2 and [u for u, _ in in2["nvml"]] == in2["want"], in2
    assert [t for _, t in in2["nvml"]] == [2 * gib] * 2, in2
    assert in2["cuda"] == {"uuids": in2["want"], "past_end": 101}, in2
    assert r["in2_info"] == [2 * gib, 2 * gib], r
    assert r["in2_allocs"] == [2, 0, 2], r
    assert r["in2_foreign_ctx"] == 101, r
    assert r["after2"] == [4, 4], r


def test_memory_kept_from_a_left_environment_is_given_back_to_it(g):
    # Environment "keep" outlives this process's visit: a holder process activated it.
    holder = g.spawn("""
        import sys, genv.sdk as s
        with s.activate(eid="keep", config=s.Env.Config(gpus=1, gpu_memory="1gi")):
            print("ready", flush=True)
            sys.stdin.readline()
    """)
    holder.expect("ready")
    # What a process of "keep" sees of the environment's use, through NVML.
    used_in_keep = r"""
import ctypes
n = ctypes.CDLL("libnvidia-ml.so.1")
class Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
h, m = ctypes.c_void_p(), Mem()
assert n.nvmlInit_v2() == 0 and n.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0
assert n.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)) == 0
print(m.used)
"""
    p = g.py(PRELUDE + r"""
probe = sys.argv[1]
def used_in_keep():
    env = dict(os.environ, GENV_ENVIRONMENT_ID="keep")
    return int(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, check=True).stdout)
out = {}
cuda_view()
with s.activate(eid="keep"):
    cuda_view()
    use(0)
    r, kept = alloc(512 * MiB)
    out["joined"] = [r, used_in_keep()]
out["left"] = used_in_keep()
with s.activate(config=s.Env.Config(gpus=1, gpu_memory="1gi")):
    cuda_view()
    use(0)
    # The other environment's capacity is whole: the 512 MiB are keep's.
    out["other"] = [mem_info(), alloc(1 << 30)[0], used_in_keep()]
    # Freed from inside another environment: back to keep.
    out["freed"] = [cuda.cuMemFree_v2(ctypes.c_uint64(kept)), used_in_keep()]
print(json.dumps(out))
""", used_in_keep, env={"LD_PRELOAD": SHIM})
    r = json.loads(p.stdout)
    half, gib = 512 << 20, 1 << 30
    assert r == {"joined": [0, half], "left": half, "other": [[gib, gib], 0, half], "freed": [0, 0]}, r
    assert holder.finish() == 0


def test_registrations_of_left_environments_are_given_back(g, tmp_path):
    # A worker running many environments in turn must not keep a ledger slot for each.
    log = tmp_path / "shim.log"
    p = g.py(PRELUDE + r"""
cuda_view()
kept = None
for i in range(6):
    with s.activate(config=s.Env.Config(gpus=1, gpu_memory="1gi")):
        cuda_view()
        use(0)
        r, ptr = alloc(256 * MiB)
        assert r == 0
        if i == 2:
            kept = ptr  # freed only after the loop, from outside any environment
        else:
            assert cuda.cuMemFree_v2(ctypes.c_uint64(ptr)) == 0
cuda_view()  # an initialisation point outside: the last environment's registration goes
assert cuda.cuMemFree_v2(ctypes.c_uint64(kept)) == 0
# The same id each time, and no initialisation point between the blocks (no NVML read to
# activate, attach() inside): the shim sees the same GENV_ENVIRONMENT_ID with a new environment
# behind it.
for i in range(3):
    with s.activate(eid="same"):
        s.configure(s.Env.Config(gpus=1, gpu_memory="1gi"))
        s.attach()
        cuda_view()
        use(0)
        r, ptr = alloc(256 * MiB)
        assert r == 0 and cuda.cuMemFree_v2(ctypes.c_uint64(ptr)) == 0
        out = mem_info()
        assert out == [GiB, GiB], out
print("done")
""", env={"LD_PRELOAD": SHIM, "GENV_LOG": "debug", "GENV_LOG_FILE": log})
    assert p.stdout.strip() == "done"
    text = log.read_text()
    registered = text.count("registered in the ledger")
    given_back = text.count("ledger slot")
    # The last registration stays until the process ends (it was never left while alive).
    assert registered == 9 and given_back == 8, text


def test_vmm_allocation_on_a_device_outside_the_environment_is_refused(g):
    # The driver was initialised outside any environment, so it knows every GPU; a cuMemCreate
    # naming a real device the environment is not attached to (by its raw ordinal, which a
    # program can guess) is refused like every other allocation path, not passed through
    # uncounted.
    p = g.py(PRELUDE + r"""
class Loc(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]
class Prop(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("handleTypes", ctypes.c_int), ("location", Loc),
                ("win32", ctypes.c_void_p), ("compression", ctypes.c_ubyte),
                ("rdma", ctypes.c_ubyte), ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4)]
assert cuda.cuInit(0) == 0
out = {}
with s.activate(config=s.Env.Config(gpu_memory="1gi")):
    s.attach(index=2)
    assert cuda.cuInit(0) == 0  # an initialisation point: the shim follows the activation
    mine = use(0)
    assert mine == 2
    def create(dev):
        h = ctypes.c_uint64()
        prop = Prop(type=1, handleTypes=0, location=Loc(type=1, id=dev))
        r = cuda.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(64 << 20), ctypes.byref(prop), ctypes.c_ulonglong(0))
        if r == 0:
            assert cuda.cuMemRelease(h) == 0
        return r
    out = {"mine": create(mine), "foreign": create(0), "over": None}
    # The environment's own device is counted against the capacity.
    h = ctypes.c_uint64()
    prop = Prop(type=1, handleTypes=0, location=Loc(type=1, id=mine))
    out["over"] = cuda.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(2 << 30), ctypes.byref(prop), ctypes.c_ulonglong(0))
print(json.dumps(out))
""", env={"LD_PRELOAD": SHIM})
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r == {"mine": 0, "foreign": 2, "over": 2}, r

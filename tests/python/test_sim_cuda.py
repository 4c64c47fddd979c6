"""The simulated libcuda.so.1 against real CUDA driver clients: C programs linked with -lcuda
(tests/c/cuda_*.c), cuda-bindings, and numba-cuda at driver level.

Each client runs in a child process on the `sim` machine (conftest.py), which puts
target/sim first on LD_LIBRARY_PATH and gives the test its own memory ledger.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import LIBCUDA, ROOT, SIM_LIB_DIR

C_DIR = ROOT / "tests" / "c"
MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture(scope="module")
def cbin(tmp_path_factory):
    """tests/c/cuda_*.c compiled against target/sim/libcuda.so: name -> executable."""
    if not LIBCUDA.exists():
        pytest.skip(f"{LIBCUDA} missing: run `make sim`")
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("cuda-c")
    bins = {}
    for src in sorted(C_DIR.glob("cuda_*.c")):
        exe = out / src.stem
        subprocess.run(
            [cc, "-Wall", "-O1", "-o", str(exe), str(src), f"-L{SIM_LIB_DIR}", "-lcuda", "-ldl"],
            check=True,
        )
        bins[src.stem] = exe
    return bins


def visible(sim, cbin, **env) -> tuple[int, list[tuple[str, str]]]:
    """(cuInit result, [(uuid, bus id)] by CUDA ordinal) as a process with `env` sees them."""
    out = sim.run(cbin["cuda_visible"], env=env).stdout
    init = int(re.search(r"^init (\d+)", out, re.M).group(1))
    return init, re.findall(r"^device \d+ (GPU-\S+) (\S+)$", out, re.M)


def nvml_order(sim, cbin) -> list[str]:
    """UUIDs in NVML (PCI bus) order."""
    _, devs = visible(sim, cbin, CUDA_DEVICE_ORDER="PCI_BUS_ID")
    assert [b for _, b in devs] == sorted(b for _, b in devs)
    return [u for u, _ in devs]


def test_c_client_devices_contexts_and_every_kind_of_memory(sim, cbin):
    out = sim.run(cbin["cuda_basic"]).stdout
    assert "driver 12020" in out
    assert "count 4" in out
    devs = re.findall(r"^device (\d) name=(.+?) uuid=(\S+) bus=(\S+) total=(\d+) (.*)$", out, re.M)
    assert len(devs) == 4
    for _, name, _, _, total, rest in devs:
        assert name == "NVIDIA H100 80GB HBM3"
        assert int(total) == 81559 * MiB
        assert rest == "cc=9.0 sms=132 warp=32 tpb=1024 uva=1 managed=1 pools=1 vmm=1"
    assert len({d[2] for d in devs}) == 4
    assert [d[2] for d in devs] == nvml_order(sim, cbin)  # default CUDA order = NVML order
    assert "context used=0" in out
    stages = ("linear ok", "pitch managed host ok", "pools ok", "vmm ok", "arrays ok", "v1 abi ok")
    for stage in stages + ("done",):
        assert stage in out
    assert "error 100 no CUDA-capable device is detected" in out


def test_context_memory_is_counted(sim, cbin):
    out = sim.run(cbin["cuda_basic"], env={"GENV_SIM_CONTEXT_MEMORY": "300mi"}).stdout
    assert f"context used={300 * MiB}" in out


def test_c_client_out_of_memory_at_the_physical_limit(sim, cbin):
    out = sim.run(cbin["cuda_oom"], env={"GENV_SIM_GPU_MEMORY": "1gi"}).stdout
    assert f"total {GiB} free {GiB}" in out
    assert "full free 0" in out
    assert "oom ok" in out


def test_cuGetProcAddress_variants_are_the_exported_functions(sim, cbin):
    p = sim.run(cbin["cuda_procaddr"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failures 0" in p.stdout
    assert "FAIL" not in p.stdout


def test_every_export_is_reachable_through_cuGetProcAddress(sim):
    """No entry point is exported that cuda-bindings-style clients cannot resolve by base name."""
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    nm = subprocess.run(
        ["nm", "-D", "--defined-only", str(LIBCUDA)], capture_output=True, text=True, check=True
    ).stdout
    exported = sorted(set(re.findall(r" T (cu\w+)$", nm, re.M)))
    assert len(exported) > 150
    code = textwrap.dedent(
        """
        import ctypes, re, sys
        lib = ctypes.CDLL("libcuda.so.1")
        gpa = lib.cuGetProcAddress_v2
        gpa.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                        ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]
        names = sys.argv[1:]
        bases = {re.sub(r"(_v\\d+)?(_ptsz|_ptds)?$", "", n) for n in names}
        reached = set()
        for base in bases:
            for flags in (0, 2):
                for version in range(2000, 13010, 10):
                    p = ctypes.c_void_p()
                    if gpa(base.encode(), ctypes.byref(p), version, flags, None) == 0:
                        reached.add(p.value)
        missing = [n for n in names
                   if ctypes.cast(getattr(lib, n), ctypes.c_void_p).value not in reached]
        print("missing", missing)
        """
    )
    out = sim.python(code, *exported).stdout
    assert "missing []" in out


@pytest.mark.parametrize(
    "spec, want",
    [
        (None, [0, 1, 2, 3]),
        ("2,0", [2, 0]),
        (" 3 , 1 ", [3, 1]),
        ("1,7,2", [1]),  # the first invalid entry ends the list
        ("1,x,2", [1]),
        ("0,0,1", [0]),
        ("", []),
        ("-1", []),
        ("uuid:3,0", [3, 0]),
        ("prefix:2", [2]),
        ("GPU-,1", []),
        ("ambiguous,1", []),
    ],
)
def test_cuda_visible_devices(sim, cbin, spec, want):
    uuids = nvml_order(sim, cbin)
    if spec is not None and spec.startswith("uuid:"):
        i, rest = spec[5:].split(",")
        spec = f"{uuids[int(i)]},{rest}"
    elif spec is not None and spec.startswith("prefix:"):
        u = uuids[int(spec[7:])]
        # The shortest prefix that names this device alone.
        n = next(n for n in range(5, len(u)) if sum(x.startswith(u[:n]) for x in uuids) == 1)
        spec = u[:n]
    elif spec is not None and spec.startswith("ambiguous"):
        common = next(n for n in range(5, 40) if len({x[:n] for x in uuids}) > 1) - 1
        assert common > 4, "the simulated UUIDs share no prefix"
        spec = uuids[0][:common] + spec[len("ambiguous") :]
    init, devs = visible(sim, cbin, CUDA_VISIBLE_DEVICES=spec)
    assert init == (0 if want else 100)
    assert [u for u, _ in devs] == [uuids[i] for i in want]
    if not want:
        out = sim.run(cbin["cuda_visible"], env={"CUDA_VISIBLE_DEVICES": spec}).stdout
        assert "count 3 -1" in out  # NOT_INITIALIZED after a failed cuInit


@pytest.mark.parametrize(
    "order, device_order, spec, want",
    [
        ("reverse", None, None, [3, 2, 1, 0]),
        ("reverse", "FASTEST_FIRST", "0", [3]),
        ("reverse", "PCI_BUS_ID", None, [0, 1, 2, 3]),
        ("reverse", "PCI_BUS_ID", "0", [0]),
        ("2,0,3,1", None, "1,2", [0, 3]),
    ],
)
def test_cuda_device_order(sim, cbin, order, device_order, spec, want):
    uuids = nvml_order(sim, cbin)
    env = {
        "GENV_SIM_CUDA_ORDER": order,
        "CUDA_DEVICE_ORDER": device_order,
        "CUDA_VISIBLE_DEVICES": spec,
    }
    _, devs = visible(sim, cbin, **env)
    assert [u for u, _ in devs] == [uuids[i] for i in want]


def device_free(sim, cbin, **env) -> list[int]:
    out = sim.run(cbin["cuda_hold"], "info", env=env).stdout
    return [int(f) for f in re.findall(r"^device \d+ free (\d+)", out, re.M)]


def test_allocation_shows_in_another_process_until_killed(sim, cbin):
    total = 81559 * MiB
    assert device_free(sim, cbin) == [total] * 4
    # CUDA ordinal 0 of a process that sees only GPU 2 is NVML device 2 for everyone else.
    holder = sim.spawn(
        cbin["cuda_hold"], "0", str(GiB), env={"CUDA_VISIBLE_DEVICES": "2"},
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    by_nvml = device_free(sim, cbin, CUDA_DEVICE_ORDER="PCI_BUS_ID")
    assert by_nvml == [total, total, total - GiB, total]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.monotonic() + 10
    while device_free(sim, cbin) != [total] * 4:
        assert time.monotonic() < deadline, "a killed process's memory did not come back"
        time.sleep(0.1)


@pytest.mark.parametrize("per_thread", ["0", "1"])
def test_cuda_bindings_driver_api(sim, cbin, per_thread):
    """cuda-bindings resolves every entry point through cuGetProcAddress_v2; with
    CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM=1 it asks for the _ptds / _ptsz variants."""
    _, devs = visible(sim, cbin)
    code = textwrap.dedent(
        """
        import ctypes, sys
        from cuda.bindings import driver as d
        per_thread = sys.argv[1] == "1"

        def ok(r):
            err, *rest = r if isinstance(r, tuple) else (r,)
            assert err == d.CUresult.CUDA_SUCCESS, err
            return rest[0] if len(rest) == 1 else rest

        ok(d.cuInit(0))
        print("version", ok(d.cuDriverGetVersion()))
        n = ok(d.cuDeviceGetCount())
        print("count", n)
        for i in range(n):
            dev = ok(d.cuDeviceGet(i))
            name = ok(d.cuDeviceGetName(64, dev)).split(b"\\0")[0].decode()
            u = bytes(ok(d.cuDeviceGetUuid(dev)).bytes).hex()
            uuid = f"GPU-{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
            print("device", i, name, uuid)

        dev = ok(d.cuDeviceGet(1))
        ctx = ok(d.cuCtxCreate(0, dev))
        assert int(ok(d.cuCtxGetDevice())) == 1
        free0, total = ok(d.cuMemGetInfo())
        ptr = ok(d.cuMemAlloc(64 << 20))
        free1, _ = ok(d.cuMemGetInfo())
        print("delta", free0 - free1)
        data = bytes(range(256)) * 16
        ok(d.cuMemcpyHtoD(ptr, data, len(data)))
        back = bytearray(len(data))
        ok(d.cuMemcpyDtoH(back, ptr, len(back)))
        print("roundtrip", bytes(back) == data)
        ok(d.cuMemFree(ptr))
        print("freed", ok(d.cuMemGetInfo())[0] == free0)
        ok(d.cuCtxDestroy(ctx))

        primary = ok(d.cuDevicePrimaryCtxRetain(ok(d.cuDeviceGet(0))))
        ok(d.cuCtxSetCurrent(primary))
        stream = ok(d.cuStreamCreate(0))
        p = ok(d.cuMemAllocAsync(1 << 20, stream))
        ok(d.cuMemFreeAsync(p, stream))
        ok(d.cuStreamSynchronize(stream))
        ok(d.cuDevicePrimaryCtxRelease(ok(d.cuDeviceGet(0))))

        # The ~480 entry points cuda-bindings resolved at load: implemented ones are non-NULL.
        from cuda.bindings._internal import driver as internal
        fp = internal._inspect_function_pointers()
        print("resolved", sum(1 for v in fp.values() if v), "of", len(fp))
        lib = ctypes.CDLL("libcuda.so.1")
        expect = {
            "cuCtxCreate_v4": "cuCtxCreate_v4",
            "cuMemAlloc_v2": "cuMemAlloc_v2",
            "cuDevicePrimaryCtxRelease_v2": "cuDevicePrimaryCtxRelease_v2",
            "cuMemcpyHtoD_v2": "cuMemcpyHtoD_v2_ptds" if per_thread else "cuMemcpyHtoD_v2",
            "cuMemcpyHtoDAsync_v2": "cuMemcpyHtoDAsync_v2" + ("_ptsz" if per_thread else ""),
            "cuMemAllocAsync": "cuMemAllocAsync_ptsz" if per_thread else "cuMemAllocAsync",
        }
        for var, sym in expect.items():
            assert fp["__" + var] == ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value, var
        assert fp["__cuGraphCreate"] == 0
        print("pointers ok")
        """
    )
    env = {"CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM": per_thread}
    out = sim.python(code, per_thread, env=env).stdout
    assert "version 12020" in out
    assert "count 4" in out
    assert re.findall(r"^device \d (.+) (GPU-\S+)$", out, re.M) == [
        ("NVIDIA H100 80GB HBM3", u) for u, _ in devs
    ]
    assert f"delta {64 * MiB}" in out
    assert "roundtrip True" in out
    assert "freed True" in out
    resolved = re.search(r"resolved (\d+) of (\d+)", out)
    assert int(resolved.group(1)) > 100 and int(resolved.group(2)) > 400
    assert "pointers ok" in out


def test_numba_cuda_driver_level(sim):
    # numba-cuda needs libcudart only to read the toolkit's version at import (for debug info);
    # without PyPI's nvidia-cuda-runtime-cu12 the answer is stubbed before the import. NVVM is
    # absent, so cuda.is_available() cannot be asked: the driver's own is_available can.
    code = textwrap.dedent(
        """
        from cuda.bindings import runtime
        from cuda.pathfinder import load_nvidia_dynamic_lib
        try:
            load_nvidia_dynamic_lib("cudart")
        except Exception:
            runtime.getLocalRuntimeVersion = lambda: (runtime.cudaError_t.cudaSuccess, 12090)
        import numpy as np
        from numba import cuda
        from numba.cuda.cudadrv.driver import driver

        print("driver available", driver.is_available)
        print("gpus", len(cuda.gpus))
        with cuda.gpus[2]:
            ctx = cuda.current_context()
            name = ctx.device.name
            print("device", ctx.device.id, name.decode() if isinstance(name, bytes) else name)
            free0, total = ctx.get_memory_info()
            a = np.arange(1 << 20, dtype=np.float32)
            da = cuda.to_device(a)
            free1, _ = ctx.get_memory_info()
            print("used", free0 - free1, a.nbytes)
            print("roundtrip", bool((da.copy_to_host() == a).all()))
            print("total", total)
        """
    )
    out = sim.python(code).stdout
    assert "driver available True" in out
    assert "gpus 4" in out
    assert "device 2 NVIDIA H100 80GB HBM3" in out
    used, nbytes = map(int, re.search(r"used (\d+) (\d+)", out).groups())
    assert used >= nbytes
    assert "roundtrip True" in out
    assert f"total {81559 * MiB}" in out


@pytest.mark.parametrize("bindings", ["12", "13"])
def test_every_entry_point_cuda_bindings_asks_for_is_known(sim, bindings):
    """The variant table (genv_abi::procaddr) knows every (name, version) cuda-bindings 12 and 13
    ask cuGetProcAddress_v2 for: none is answered 'symbol not found' (status 1). Functions this
    simulator does not implement still resolve to their variant, then answer NOT_FOUND."""
    env = {"GENV_SIM_TRACE": "1"}
    if bindings == "13":
        cuda13 = ROOT / "target" / "py-cuda13"
        if not (cuda13 / "cuda" / "bindings").is_dir():
            pytest.skip(f"{cuda13} missing: run scripts/setup-venv.sh")
        env.update(PYTHONPATH=str(cuda13), GENV_SIM_CUDA_VERSION="13000")
    p = sim.python("from cuda import bindings; from cuda.bindings import driver as d; "
                   "d.cuInit(0); print(bindings.__version__)", env=env)
    assert p.stdout.startswith(bindings + "."), p.stdout
    asked = re.findall(r"^\[genv-sim-cuda\] cuGetProcAddress (\S+) (\d+) (\d+) -> (.*)$",
                       p.stderr, re.M)
    assert len(asked) > 400, p.stderr[-2000:]
    unknown = [a for a in asked if a[3].startswith("status")]
    assert unknown == [], unknown
    if bindings == "13":
        assert max(int(a[1]) for a in asked) >= 13000
        answers = {(a[0], a[1]): a[3] for a in asked}
        assert answers[("cuCtxGetDevice", "13000")] == "cuCtxGetDevice_v2"
        assert answers[("cuMemAlloc", "3020")] == "cuMemAlloc_v2"

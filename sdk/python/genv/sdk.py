"""genv.sdk: GPU environments from Python, on the same state as the ``genv`` CLI.

Environments created here are listed by ``genv envs`` and ``genv devices`` like any other, and
vanish when the process that activated them dies (and no process started inside them runs).

What activation means for this process and its children (see sdk/README.md):

* Child processes started inside :func:`activate` (subprocess, multiprocessing, Ray workers)
  run under the genv shim (``LD_PRELOAD``) with the environment's device view and GPU memory
  capacity enforced.
* This process itself is fully enforced only when it already runs with the shim loaded (it
  was started with the shim preloaded, e.g. ``LD_PRELOAD=libgenv_shim.so python …``): the shim
  follows each activation, and the end of each block, from the next CUDA or NVML
  initialisation on (``cuInit``, context creation, ``nvmlInit``), also when CUDA or NVML was
  used before. Otherwise CUDA initialised here after :func:`activate` sees only the attached
  devices (``CUDA_VISIBLE_DEVICES``), but the memory capacity is NOT enforced in this process;
  a warning says so, once per process. The real driver reads ``CUDA_VISIBLE_DEVICES`` once, at
  its first ``cuInit``: an activation whose devices differ from those CUDA already uses here is
  refused, and an attachment change that CUDA here can no longer follow is warned about.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from . import _native

__all__ = [
    "Env",
    "EnforcementWarning",
    "activate",
    "active",
    "attach",
    "attached",
    "configuration",
    "configure",
    "detach",
    "eid",
    "lock",
    "shim_path",
]

_EID = "GENV_ENVIRONMENT_ID"
_SHIM_NAME = "libgenv_shim.so"
# Everything activate() may change in os.environ; restored exactly (set, empty or unset).
_MANAGED = (
    "GENV_ENVIRONMENT_ID",
    "GENV_MEMBER",
    "LD_PRELOAD",
    "GENV_SHIM_PATH",
    "GENV_SHIM_BYPASS",
    "CUDA_VISIBLE_DEVICES",
)


class EnforcementWarning(RuntimeWarning):
    """Activation could not give this process everything an environment enforces."""


class Env:
    """Namespace of environment types (as in the original genv SDK)."""

    @dataclasses.dataclass
    class Config:
        """Environment configuration.

        :param name: Environment name (1 to 63 printable characters)
        :param gpus: Device count (a whole number from 0)
        :param gpu_memory: GPU memory capacity per device: a number and an optional unit among
            ``b k m g t`` (powers of 1000) and ``ki mi gi ti`` / ``KiB MiB GiB TiB`` (powers of
            1024), in any case (``42mi``, ``4g``, ``4GiB``, ``1.5g``, ``44040192``); an ``int``
            is bytes
        """

        name: Optional[str] = None
        gpus: Optional[int] = None
        gpu_memory: Optional[str] = None

        def __post_init__(self) -> None:
            if self.name is not None and not isinstance(self.name, str):
                raise TypeError(f"Env.Config name must be a str, not {type(self.name).__name__}")
            if self.gpus is not None and (isinstance(self.gpus, bool) or not isinstance(self.gpus, int)):
                raise TypeError(f"Env.Config gpus must be an int, not {type(self.gpus).__name__}")
            if isinstance(self.gpu_memory, int) and not isinstance(self.gpu_memory, bool):
                self.gpu_memory = str(self.gpu_memory)
            if self.gpu_memory is not None and not isinstance(self.gpu_memory, str):
                raise TypeError(
                    f"Env.Config gpu_memory must be a str such as '4g' (or an int of bytes), "
                    f"not {type(self.gpu_memory).__name__}"
                )
            # The state's own rules, so the SDK and the CLI accept the same values.
            _native.validate_config(self.name, self.gpus, self.gpu_memory)


# One activation per process at a time: os.environ is process-wide.
_guard = threading.RLock()


@dataclasses.dataclass
class _Activation:
    eid: str
    pid: int
    saved: Dict[str, Optional[str]]
    # Whether this module keeps CUDA_VISIBLE_DEVICES in step with the attachments.
    manages_cvd: bool


_current: Optional[_Activation] = None
# The warning that this process runs without the shim is given once per process.
_warned_no_shim = False


def active() -> bool:
    """Returns whether running in an active environment.

    :rtype: bool
    """
    return eid() is not None


def eid() -> Optional[str]:
    """Returns the current environment identifier if running in an active environment.

    :rtype: Optional[str]
    """
    v = os.environ.get(_EID)
    return v if v else None


def _require() -> str:
    e = eid()
    if e is None:
        raise RuntimeError(_native.NOT_ACTIVE)
    return e


def _env_info() -> dict:
    e = _require()
    info = _native.env(e)
    if info is None:
        raise RuntimeError(
            f"Environment {_native.quote(e)} no longer exists (its activating processes are gone); "
            "activate a new environment"
        )
    return info


def shim_path() -> Optional[str]:
    """The genv shim (libgenv_shim.so) that processes started inside an environment preload.

    Looked up in this order: ``$GENV_SHIM_PATH``; ``<sys.prefix>/lib/genv/`` (where the wheel
    of ``make wheel`` installs it, beside the ``genv`` it puts in the environment's ``bin/``);
    next to the ``genv`` found on ``PATH``, or in ``../lib/genv/`` from it (the layout of
    ``make install``); the source tree's ``target/release/`` when this package is used from a
    checkout. None when not found.
    """
    p = os.environ.get("GENV_SHIM_PATH")
    if p:
        # Absolute: children may run from another directory.
        return os.path.abspath(p) if os.path.isfile(p) else None
    # The wheel's own (the venv need not be on PATH: `venv/bin/python` alone finds it).
    cands: List[Path] = [Path(sys.prefix) / "lib" / "genv" / _SHIM_NAME]
    g = shutil.which("genv")
    if g:
        d = Path(g).resolve().parent
        cands += [d / _SHIM_NAME, d / ".." / "lib" / "genv" / _SHIM_NAME]
    # sdk/python/genv/sdk.py in a checkout (editable installs).
    cands.append(Path(__file__).resolve().parents[3] / "target" / "release" / _SHIM_NAME)
    for c in cands:
        if c.is_file():
            return str(c.resolve())
    return None


def _preload_with(shim: str, preload: str) -> str:
    """``LD_PRELOAD`` with ``shim`` first, then the entries of ``preload`` (separated by colons
    or spaces, as the loader reads them) that are not a genv shim."""
    rest = [p for p in preload.replace(" ", ":").split(":") if p and not p.endswith(_SHIM_NAME)]
    return ":".join([shim] + rest)


def _shim_loaded() -> bool:
    """Whether the shim is mapped into this process (it was preloaded when we started)."""
    try:
        with open("/proc/self/maps", "r", encoding="utf-8", errors="replace") as f:
            return any(_SHIM_NAME in line for line in f)
    except OSError:
        return False


def _nvml_shows_the_machine() -> bool:
    """Whether this process's NVML shows the whole machine, so that the device list may be read
    from it: not when it runs under the shim inside an environment (NVML then shows that
    environment's view, renumbered and capped, which must never become the state's device list;
    the list recorded in the state is used instead). Outside an environment the shim passes NVML
    through, and it re-reads the environment at each ``nvmlInit``.
    """
    return not (active() and _shim_loaded())


def _set(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _sync_cvd(info: dict) -> None:
    """CUDA_VISIBLE_DEVICES = the attached devices' UUIDs, in attach order ("" when none)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(_attached_uuids(info))


def _warn_no_shim_once(shim: str) -> None:
    global _warned_no_shim
    if _warned_no_shim:
        return
    _warned_no_shim = True
    warnings.warn(
        "genv: this process was not started with the genv shim loaded, so CUDA initialised in it "
        "after activate() sees only the attached devices (CUDA_VISIBLE_DEVICES) but their GPU "
        "memory capacity is NOT enforced, NVML/nvidia-smi in it show the whole machine, and "
        "CUDA cannot follow a later activation to other devices. Processes started inside the "
        "environment are fully enforced. To enforce this process too, start it with the shim "
        f"preloaded: LD_PRELOAD={shim} python … (the path: "
        "python -c 'import genv.sdk; print(genv.sdk.shim_path())'). "
        "This warning is given once per process.",
        EnforcementWarning,
        stacklevel=4,
    )


def _cuda_devices_here() -> Optional[List[str]]:
    """The UUIDs of the devices CUDA uses in this process, in CUDA ordinal order, once the driver
    was initialised here (it reads ``CUDA_VISIBLE_DEVICES`` then, once); None while libcuda is
    not loaded or ``cuInit`` has not succeeded. Never loads or initialises CUDA itself."""
    path = None
    try:
        with open("/proc/self/maps", "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and os.path.basename(parts[5].strip()).startswith("libcuda.so"):
                    path = parts[5].strip()
                    break
    except OSError:
        return None
    if path is None:
        return None
    try:
        # RTLD_NOLOAD: a handle on the copy already mapped, never a second one.
        cuda = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    count = ctypes.c_int()
    # CUDA_ERROR_NOT_INITIALIZED before cuInit (and after a failed one): nothing is fixed yet.
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return None
    out = []
    for i in range(count.value):
        dev = ctypes.c_int()
        raw = (ctypes.c_ubyte * 16)()
        if cuda.cuDeviceGet(ctypes.byref(dev), i) != 0 or cuda.cuDeviceGetUuid(raw, dev) != 0:
            out.append(f"CUDA device {i}")
            continue
        h = bytes(raw).hex()
        out.append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _attached_uuids(info: dict) -> List[str]:
    uuids = {d["index"]: d["uuid"] for d in _native.devices_list(False)}
    return [uuids[i] for i in info["attached"] if i in uuids]


def _gpus_text(uuids: List[str]) -> str:
    """``GPU 0``, ``GPUs 0, 2`` (NVML indices), or ``no GPU``."""
    index = {d["uuid"]: d["index"] for d in _native.devices_list(False)}
    names = [str(index.get(u, u)) for u in uuids]
    if not names:
        return "no GPU"
    return ("GPU " if len(names) == 1 else "GPUs ") + ", ".join(names)


def _cuda_mismatch(info: dict) -> Optional[str]:
    """Without the shim: why CUDA in this process cannot follow the environment ``info`` (it
    was initialised on other devices, or in another order), or None when it can."""
    here = _cuda_devices_here()
    if here is None:
        return None
    want = _attached_uuids(info)
    if here == want:
        return None
    return f"CUDA in this process was initialised on {_gpus_text(here)}, while the environment has {_gpus_text(want)}"


def _refuse_if_cuda_cannot_follow(eid: str, info: dict) -> None:
    why = _cuda_mismatch(info)
    if why is None:
        return
    shim = shim_path() or "libgenv_shim.so"
    raise RuntimeError(
        f"genv: cannot activate environment {_native.quote(eid)} here: {why}, and "
        "without the genv shim CUDA keeps the devices it was initialised on. Activate before "
        "CUDA is initialised, run the GPU work in a process started inside the environment, or "
        f"start this process with the shim preloaded (LD_PRELOAD={shim} python …)"
    )


@contextlib.contextmanager
def activate(
    *,
    eid: Optional[str] = None,
    config: Optional[Env.Config] = None,
    over_subscribe: bool = False,
) -> Iterator[None]:
    """A context manager for activating an environment for the current process.

    Configures the environment if configuration is specified.
    Attaches devices if device count is configured.

    Raises :code:`RuntimeError` if already running in an active environment.

    The environment is deactivated on exit, also when an exception leaves the block.

    :param eid: Environment identifier (default: this process's pid); an existing environment
        of yours with this identifier is joined
    :param config: Environment configuration
    :param over_subscribe: Allow sharing devices with other over-subscribed environments whose
        GPU memory capacities fit (a genv extension; see :func:`lock`)
    :rtype: None
    """
    global _current
    if config is not None and not isinstance(config, Env.Config):
        raise TypeError(f"config must be a genv.sdk.Env.Config, not {type(config).__name__}")
    if eid is not None and not isinstance(eid, str):
        raise TypeError(f"eid must be a str, not {type(eid).__name__}")
    cfg = config or Env.Config()
    with _guard:
        if active():
            current = _native.quote(os.environ[_EID])
            raise RuntimeError(f"{_native.ALREADY_ACTIVE} ({current})")
        pid = os.getpid()
        if eid is None:
            eid = str(pid)
            n = 1
            # Never join someone else's environment by accident (ids such as `--id 1234`).
            while _native.env(eid) is not None:
                n += 1
                eid = f"{pid}-{n}"
        shim_here = _shim_loaded()
        if shim_here and not _native.devices_list(False):
            # Not in an environment yet, so NVML here shows the machine: record its devices now,
            # for attach() inside the block, where this process's NVML shows the environment.
            _native.devices_list(True)
        info = _native.activate(eid, pid, cfg.name, cfg.gpus, cfg.gpu_memory, True, over_subscribe, True)
        act = _Activation(eid, pid, {k: os.environ.get(k) for k in _MANAGED}, not shim_here)
        try:
            if act.manages_cvd:
                _refuse_if_cuda_cannot_follow(eid, info)
            os.environ[_EID] = eid
            # Makes the processes started inside members, which keep the environment alive
            # after this one ends (see state/src/members.rs).
            _set("GENV_MEMBER", info.get("member"))
            shim = shim_path()
            if shim is not None:
                os.environ["LD_PRELOAD"] = _preload_with(shim, os.environ.get("LD_PRELOAD", ""))
                os.environ["GENV_SHIM_PATH"] = shim
            # The CLI bypasses the shim for itself; children inside the environment must not.
            os.environ.pop("GENV_SHIM_BYPASS", None)
            if act.manages_cvd:
                _sync_cvd(info)
            _current = act
        except BaseException:
            _restore(act)
            raise
    if shim is None:
        warnings.warn(
            "genv: libgenv_shim.so not found (set GENV_SHIM_PATH, or put genv on PATH): "
            "processes started in this environment are not enforced",
            EnforcementWarning,
            stacklevel=3,
        )
    elif not shim_here:
        _warn_no_shim_once(shim)
    try:
        yield
    finally:
        with _guard:
            _restore(act)


def _restore(act: _Activation) -> None:
    global _current
    for k, v in act.saved.items():
        _set(k, v)
    if _current is act:
        _current = None
    # A child forked inside the block leaves it without ending its parent's activation.
    if os.getpid() == act.pid:
        _native.deactivate(act.eid, act.pid)


def attached() -> List[int]:
    """Returns the indices of devices attached to the current environment.

    Indices are in host namespace even when running in a container.

    Raises :code:`RuntimeError` if not running in an active environment.

    :rtype: Iterable[int]
    """
    return list(_env_info()["attached"])


def configuration() -> Env.Config:
    """Returns the current environment configuration.

    Raises :code:`RuntimeError` if not running in an active environment.

    :rtype: Env.Config
    """
    info = _env_info()
    return Env.Config(name=info["name"], gpus=info["gpus"], gpu_memory=info["gpu_memory"])


def configure(config: Env.Config) -> None:
    """Configures the current environment.

    The whole configuration is replaced: fields left ``None`` are cleared (as with the
    original genv). Devices are not attached or detached: call :func:`attach` after changing
    the device count.

    Raises :code:`RuntimeError` if not running in an active environment.

    :param config: Environment configuration
    :rtype: None
    """
    if not isinstance(config, Env.Config):
        raise TypeError(f"config must be a genv.sdk.Env.Config, not {type(config).__name__}")
    e = _require()
    _native.set_config(e, config.name, config.gpus, config.gpu_memory)


def _after_attachment_change() -> None:
    act = _current
    if act is not None and act.manages_cvd and act.eid == eid():
        info = _env_info()
        _sync_cvd(info)
        # The attachments changed already (the state is what genv says); CUDA here cannot
        # follow them: say so, every time, since each change is its own.
        why = _cuda_mismatch(info)
        if why is not None:
            warnings.warn(
                f"genv: {why}: without the genv shim CUDA keeps the devices it was initialised "
                "on, so this process's own CUDA does not follow the change (processes started "
                "in the environment from now on do)",
                EnforcementWarning,
                stacklevel=3,
            )


def attach(*, index: Optional[int] = None, over_subscribe: bool = False) -> List[int]:
    """Attaches the current environment to devices: as many as its configured device count
    (picked by genv), or device ``index`` (NVML index).

    Raises :code:`RuntimeError` if not running in an active environment, if the device count
    is not configured (and no index is given), or if not enough devices are available (the
    environment is then detached, as with ``genv attach``).

    :param index: Attach this device only
    :param over_subscribe: Allow sharing devices with other over-subscribed environments
    :returns: The attached device indices, in attach order
    """
    e = _require()
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise TypeError(f"index must be an int, not {type(index).__name__}")
    _env_info()
    try:
        return list(_native.attach(e, index, over_subscribe, _nvml_shows_the_machine()))
    finally:
        _after_attachment_change()


def detach(*, index: Optional[int] = None) -> None:
    """Detaches the current environment from every device, or from device ``index`` only.

    Raises :code:`RuntimeError` if not running in an active environment.
    """
    e = _require()
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise TypeError(f"index must be an int, not {type(index).__name__}")
    _env_info()
    _native.detach(e, index)
    _after_attachment_change()


@contextlib.contextmanager
def lock() -> Iterator[None]:
    """A context manager for obtaining exclusive access to the attached devices.

    Does nothing if not running in an active environment or not attached to devices.

    Waits while another environment sharing any of the devices holds it. Processes of the same
    environment do not exclude each other. Released on exit, or when the holder dies.

    :rtype: None
    """
    e = eid()
    if e is None:
        yield
        return
    held = _native.lock_env(e)
    try:
        yield
    finally:
        held.release()


def _devices() -> List[dict]:
    """Every device (index, uuid, name, total_memory, eids attached); for genv.ray and tests."""
    return _native.devices_list(_nvml_shows_the_machine())


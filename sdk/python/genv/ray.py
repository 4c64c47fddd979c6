"""genv.ray: Ray tasks in their own genv environments, on the GPUs Ray assigned to them.

A task decorated with :func:`remote` (or a body wrapped in :func:`environment` /
:func:`activate_assigned`) runs in a fresh environment attached to ``ray.get_gpu_ids()``.
A fractional GPU (``num_gpus=0.5``) becomes a GPU memory capacity of that share of the
device's memory, so tasks packed on one GPU by Ray cannot take each other's memory.

Enforcement (see sdk/README.md): the shim enforces the capacity for CUDA used

* in the task's worker process, when the worker started with the shim preloaded: :func:`remote`
  does this through the task's ``runtime_env`` (``LD_PRELOAD``). The shim follows each task's
  activation in the worker (from its next CUDA or NVML initialisation), so a worker may run
  several tasks in turn, each in its own environment; and
* in processes the task body starts (subprocess, multiprocessing), always.

A worker without the shim preloaded (a plain ``@ray.remote`` task using
:func:`environment`) gets the device view through ``CUDA_VISIBLE_DEVICES`` only, without the
memory capacity in its own process, and ``genv.sdk`` warns about it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar, Union

from . import sdk

__all__ = ["activate_assigned", "environment", "remote", "runtime_env"]

F = TypeVar("F", bound=Callable[..., Any])


def runtime_env(base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A Ray ``runtime_env`` whose workers start with the genv shim preloaded.

    Pass it to ``ray.init(runtime_env=...)``, ``@ray.remote(runtime_env=...)`` or
    ``.options(runtime_env=...)``; ``base`` is merged in (its ``env_vars`` are kept, its
    ``LD_PRELOAD`` after the shim). Also records this machine's GPUs in the genv state, so that
    workers find them there.

    Raises :code:`RuntimeError` when the shim cannot be found (see :func:`genv.sdk.shim_path`).
    """
    env = dict(base or {})
    env_vars = {str(k): str(v) for k, v in (env.get("env_vars") or {}).items()}
    # A GENV_SHIM_PATH given for the workers wins: the nodes may install genv elsewhere.
    shim = env_vars.get("GENV_SHIM_PATH") or sdk.shim_path()
    if shim is None:
        raise RuntimeError(
            "cannot find libgenv_shim.so: set GENV_SHIM_PATH or put genv on PATH "
            "(see genv.sdk.shim_path)"
        )
    env_vars["LD_PRELOAD"] = sdk._preload_with(shim, env_vars.get("LD_PRELOAD", ""))
    env_vars["GENV_SHIM_PATH"] = shim
    # The environment gives the task exactly its GPUs: Ray's own CUDA_VISIBLE_DEVICES (host
    # indices) would select among the environment's devices instead.
    env_vars["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] = "1"
    env["env_vars"] = env_vars
    try:
        sdk._devices()
    except Exception:  # no NVML here (e.g. a CPU-only driver node): workers read it themselves
        pass
    return env


def _host_index(gpu_id: Union[int, str], devices: List[dict]) -> int:
    """Ray's GPU id as an NVML index: a number is one (Ray numbers the node's GPUs as the
    raylet's CUDA_VISIBLE_DEVICES or NVML does), a UUID is looked up."""
    s = str(gpu_id).strip()
    if s.isdigit():
        return int(s)
    for d in devices:
        if d["uuid"] == s:
            return int(d["index"])
    raise RuntimeError(f"Ray assigned GPU {s!r}, which genv does not know on this machine")


@contextlib.contextmanager
def activate_assigned(
    *,
    name: Optional[str] = None,
    gpu_memory: Optional[str] = None,
    eid: Optional[str] = None,
) -> Iterator[List[int]]:
    """Inside a Ray task or actor: activates an environment attached to the GPUs Ray assigned
    (``ray.get_gpu_ids()``), yielding their NVML indices.

    The capacity is ``gpu_memory`` when given, else for a fractional GPU that share of the
    device's total memory (``num_gpus=0.25`` of an 80 GB GPU: 20 GB), else none (whole GPUs).
    Devices are attached over-subscribed, so tasks that Ray packs on one GPU share it within
    their capacities, while a GPU held by a non-Ray genv environment stays refused.

    Raises :code:`RuntimeError` if already running in an active environment, or when genv
    refuses a device (e.g. another environment holds it exclusively).
    """
    import ray

    ids = ray.get_gpu_ids()
    devices = sdk._devices()
    hosts = [_host_index(i, devices) for i in ids]
    if gpu_memory is None and hosts:
        share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", len(hosts)))
        per_device = share / len(hosts)
        if per_device < 1:
            totals = [int(d["total_memory"]) for d in devices if int(d["index"]) in hosts]
            if totals:
                gpu_memory = str(max(1, int(min(totals) * per_device)))
    if eid is None:
        ctx = ray.get_runtime_context()
        rid = ctx.get_task_id() or ctx.get_actor_id() or str(os.getpid())
        eid = f"ray-{rid}"[:63]
    # Ray's CUDA_VISIBLE_DEVICES (if it set one) would count inside the environment's devices.
    saved = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        with sdk.activate(eid=eid, config=sdk.Env.Config(name=name, gpu_memory=gpu_memory), over_subscribe=True):
            for h in hosts:
                sdk.attach(index=h, over_subscribe=True)
            sdk.configure(sdk.Env.Config(name=name, gpus=len(hosts), gpu_memory=gpu_memory))
            yield sdk.attached()
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def environment(
    fn: Optional[F] = None, *, name: Optional[str] = None, gpu_memory: Optional[str] = None
) -> Any:
    """Decorator: the function's body runs in :func:`activate_assigned` (use it under
    ``@ray.remote``). The environment is named ``name``, default ``ray:<function name>``."""

    def deco(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with activate_assigned(name=name or f"ray:{f.__name__}"[:63], gpu_memory=gpu_memory):
                return f(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco(fn) if fn is not None else deco


def remote(*args: Any, **options: Any) -> Any:
    """Like ``ray.remote`` for functions: each call runs in its own environment on the GPUs Ray
    assigned, in a worker started with the shim preloaded (:func:`runtime_env`, merged with
    any ``runtime_env`` given). ``max_calls`` is Ray's (Ray's default for GPU tasks is one task
    per worker); a worker reused for several tasks is enforced for each in turn.

    ``@genv.ray.remote(num_gpus=0.5)`` or ``@genv.ray.remote``; ``name=`` and ``gpu_memory=``
    are passed to :func:`environment`, every other option to ``ray.remote``.
    """
    import ray

    name = options.pop("name", None)
    gpu_memory = options.pop("gpu_memory", None)

    def make(f: Callable[..., Any]) -> Any:
        opts = dict(options)
        opts["runtime_env"] = runtime_env(opts.get("runtime_env"))
        return ray.remote(**opts)(environment(f, name=name, gpu_memory=gpu_memory))

    if len(args) == 1 and callable(args[0]) and not options:
        return make(args[0])
    if args:
        raise TypeError("genv.ray.remote takes keyword options only, or decorates a function")
    return make

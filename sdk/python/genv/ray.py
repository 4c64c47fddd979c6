"""genv.ray: Ray tasks in their own genv environments, on the GPUs Ray assigned to them.

A task decorated with :func:`remote` (or a body wrapped in :func:`environment` /
:func:`activate_assigned`) runs in a fresh environment per task attempt (``ray-<task id>-<random>``:
Ray's task ids repeat across Ray instances), attached to ``ray.get_gpu_ids()`` where genv can give
them, else to other GPUs of the node genv can give (Ray does not know genv's other environments).
A fractional GPU (``num_gpus=0.5``) becomes a GPU memory capacity of that share of the
device's memory, so tasks packed on one GPU by Ray cannot take each other's memory. Ray started
inside an environment (``genv exec``, an activated shell) runs its tasks in that environment, on
the GPUs Ray assigned among its own.

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
import secrets
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar, Union

from . import _native, sdk

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


def _unique_eid() -> str:
    """``ray-<task id>-<random>``: Ray's task ids repeat across Ray instances (every driver's
    first task has the same one), and a task attempt runs again under the same id; the random
    part makes each activation its own environment, whoever and wherever runs it."""
    import ray

    ctx = ray.get_runtime_context()
    rid = ctx.get_task_id() or ctx.get_actor_id() or str(os.getpid())
    while True:
        # 10 hex digits of randomness, the task id cut to fit the state's 63 characters.
        tail = secrets.token_hex(5)
        eid = f"ray-{rid}"[: _native.EID_MAX - len(tail) - 1] + "-" + tail
        if _native.env(eid) is None:
            return eid


def _node_gpus(devices: List[dict], cvd: Optional[str]) -> List[int]:
    """The GPUs Ray may use on this node, as NVML indices: those of the raylet's
    ``CUDA_VISIBLE_DEVICES`` (inherited by the worker when Ray is told not to set its own), or
    every GPU."""
    if cvd is None or os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES") != "1":
        return [int(d["index"]) for d in devices]
    out = []
    for tok in cvd.split(","):
        tok = tok.strip()
        if tok:
            try:
                out.append(_host_index(tok, devices))
            except RuntimeError:
                pass
    return out


def _holders(devices: List[dict], indices: List[int]) -> str:
    """Who holds each of ``indices``: ``GPU 0: not-ray (alice)``."""
    envs = {e["eid"]: e for e in _native.envs()}
    parts = []
    for d in devices:
        if int(d["index"]) not in indices:
            continue
        who = []
        for e in d["eids"]:
            info = envs.get(e)
            label = (info and info.get("name")) or e
            who.append(f"{label} ({info['username']})" if info else label)
        parts.append(f"GPU {d['index']}: " + (", ".join(who) if who else "no room left"))
    return "; ".join(parts)


def _attach_where_genv_can(hosts: List[int], node: List[int], devices: List[dict]) -> None:
    """Attaches the active environment to ``len(hosts)`` devices, each shared within the
    environment's capacity: Ray's own choice ``hosts`` where genv can give it, otherwise other
    GPUs of the node that genv can give now (Ray does not know which GPUs other genv
    environments hold). Raises RuntimeError naming what holds the GPUs when there are not
    enough."""
    got: List[int] = []
    for h in hosts + [n for n in node if n not in hosts]:
        if len(got) == len(hosts):
            break
        try:
            sdk.attach(index=h, over_subscribe=True)
            got.append(h)
        except RuntimeError:
            continue
    if len(got) < len(hosts):
        raise RuntimeError(
            f"genv.ray: this task needs {len(hosts)} GPU(s) and genv can give {len(got)} on this node "
            f"now (Ray assigned GPU {', '.join(map(str, hosts))}; {_holders(devices, node)}). Ray does "
            "not know which GPUs genv environments outside it hold: start Ray on this node with "
            "the GPUs it may use only (ray start --num-gpus=N, CUDA_VISIBLE_DEVICES naming them)"
        )


def _capacity(share: float, hosts: List[int], devices: List[dict]) -> Optional[str]:
    """A fractional GPU as bytes of the (smallest) device's memory; None for whole GPUs."""
    if not hosts:
        return None
    per_device = share / len(hosts)
    if per_device >= 1:
        return None
    totals = [int(d["total_memory"]) for d in devices if int(d["index"]) in hosts]
    return str(max(1, int(min(totals) * per_device))) if totals else None


@contextlib.contextmanager
def _within_enclosing(ids: List[Union[int, str]], share: float, gpu_memory: Optional[str]) -> Iterator[List[int]]:
    """The worker was started inside an environment (Ray itself runs in ``genv exec`` or an
    activated shell): the task runs in that environment, on the GPUs Ray assigned among the
    environment's own. Ray's GPU ids there count the environment's GPUs (Ray read them from NVML
    under the shim), in attach order."""
    e = sdk.eid()
    attached = sdk.attached()
    devices = sdk._devices()
    uuid_of = {int(d["index"]): d["uuid"] for d in devices}
    picked: List[int] = []
    for i in ids:
        s = str(i).strip()
        if s.isdigit() and int(s) < len(attached):
            picked.append(int(s))
            continue
        by_uuid = [k for k, h in enumerate(attached) if uuid_of.get(h) == s]
        if by_uuid:
            picked.append(by_uuid[0])
            continue
        have = f"{len(attached)} GPU" + ("" if len(attached) == 1 else "s")
        if attached:
            have += f" (the machine's {', '.join(map(str, attached))})"
        raise RuntimeError(
            f"genv.ray: Ray assigned GPU {s} to this task, but Ray runs inside the enclosing "
            f"environment {_native.quote(e)}, which has {have}: start Ray there without "
            f"num_gpus (it then counts the environment's GPUs), or with at most {len(attached)}"
        )
    if gpu_memory is not None or (ids and share / len(ids) < 1):
        warnings.warn(
            f"genv.ray: inside the enclosing environment {_native.quote(e)} tasks share its memory "
            "capacity: a fractional GPU or gpu_memory places the task but does not cap it",
            sdk.EnforcementWarning,
            stacklevel=4,
        )
    hosts = [attached[k] for k in picked]
    # The shim reads CUDA_VISIBLE_DEVICES at the worker's first cuInit, as indices into the
    # environment's GPUs (the worker was started in it).
    want = [uuid_of[h] for h in hosts if h in uuid_of]
    here = sdk._cuda_devices_here()
    if here is not None and here != want:
        raise RuntimeError(
            f"genv.ray: CUDA in this worker was initialised on other GPUs of environment "
            f"{_native.quote(e)} by an earlier task, and cannot follow to GPU "
            f"{', '.join(map(str, hosts))}: keep Ray's default of one GPU task per worker "
            "(max_calls=1)"
        )
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, picked))
    try:
        yield hosts
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


@contextlib.contextmanager
def activate_assigned(
    *,
    name: Optional[str] = None,
    gpu_memory: Optional[str] = None,
    eid: Optional[str] = None,
) -> Iterator[List[int]]:
    """Inside a Ray task or actor: activates an environment of its own for this task attempt,
    attached to the GPUs Ray assigned (``ray.get_gpu_ids()``) where genv can give them, and
    yields their NVML indices.

    The identifier is ``ray-<task id>-<random>`` unless ``eid`` is given: unique for every
    activation, across Ray instances, users and nodes. The capacity is ``gpu_memory`` when
    given, else for a fractional GPU that share of the device's total memory
    (``num_gpus=0.25`` of an 80 GB GPU: 20 GB), else none (whole GPUs). Devices are attached
    over-subscribed, so tasks that Ray packs on one GPU share it within their capacities. A GPU
    that genv cannot give (another genv environment holds it, or has taken its memory) is
    replaced by another GPU of the node that genv can give; Ray does not know about genv's
    environments.

    When the worker runs inside an environment already (Ray started in ``genv exec`` or an
    activated shell), the task runs in that environment on the GPUs Ray assigned among its
    own (yielded as NVML indices); tasks then share its capacity.

    Raises :code:`RuntimeError` when genv cannot give the task as many GPUs as Ray assigned
    (naming who holds them), or inside an environment when Ray assigned more GPUs than it has.
    """
    import ray

    ids = ray.get_gpu_ids()
    share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", len(ids)))
    if sdk.active() and eid is None:
        with _within_enclosing(ids, share, gpu_memory) as hosts:
            yield hosts
        return
    # Ray's CUDA_VISIBLE_DEVICES, if it set one, would count inside the environment's devices;
    # when told not to set one, the worker's is the raylet's: the GPUs of this node Ray may use.
    saved = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        devices = sdk._devices()
        hosts = [_host_index(i, devices) for i in ids]
        node = _node_gpus(devices, saved)
        if gpu_memory is None:
            gpu_memory = _capacity(share, hosts, devices)
        if eid is None:
            eid = _unique_eid()
        with sdk.activate(eid=eid, config=sdk.Env.Config(name=name, gpu_memory=gpu_memory), over_subscribe=True):
            _attach_where_genv_can(hosts, node, devices)
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

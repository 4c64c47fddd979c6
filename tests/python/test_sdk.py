"""genv.sdk (sdk/): every function of python-sdk.rst, on the same state as the genv CLI.

Each case runs its SDK code in a child interpreter on the simulated machine (the `sim` fixture
of conftest.py), with its own GENV_TMPDIR, and checks the state through the genv CLI.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN_DIR, GENV, SHIM, require_built

pytest.importorskip("genv.sdk", reason="genv.sdk not installed: run scripts/setup-venv.sh")


class G:
    """The simulated machine with genv: runs SDK snippets and genv commands on one state."""

    def __init__(self, sim, state: Path):
        self.sim = sim
        self.state = state
        self.vars = {
            "GENV_TMPDIR": state,
            "GENV_SHIM_PATH": SHIM,
            "PATH": f"{BIN_DIR}{os.pathsep}{sim.env['PATH']}",
            "GENV_ENVIRONMENT_ID": None,
            "LD_PRELOAD": None,
        }

    def env(self, extra=None):
        return {**self.vars, **(extra or {})}

    def py(self, code: str, *args, env=None, check=True, timeout=120):
        return self.sim.run(sys.executable, "-c", textwrap.dedent(code), *args, env=self.env(env),
                            check=check, timeout=timeout)

    def genv(self, *args, env=None, check=True):
        return self.sim.run(GENV, *args, env=self.env(env), check=check)

    def envs(self, env=None) -> list:
        return json.loads(self.genv("envs", "--json", env=env).stdout)

    def devices(self) -> list:
        return json.loads(self.genv("devices", "--json").stdout)

    def spawn(self, code: str, *args, env=None) -> "Child":
        p = self.sim.spawn(sys.executable, "-c", textwrap.dedent(code), *args, env=self.env(env),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return Child(p)


class Child:
    """A child that prints one line per step and waits on stdin between steps."""

    def __init__(self, p: subprocess.Popen):
        self.p = p

    def line(self, timeout: float = 60) -> str | None:
        """The next line, or None when none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.05)
            if r:
                s = self.p.stdout.readline()
                if not s:
                    pytest.fail(f"child ended (exit {self.p.wait()}): {self.p.stderr.read()}")
                return s.strip()
            if self.p.poll() is not None:
                pytest.fail(f"child exited {self.p.returncode}: {self.p.stderr.read()}")
        return None

    def expect(self, want: str, timeout: float = 60) -> str:
        s = self.line(timeout)
        assert s is not None and s.startswith(want), f"wanted {want!r}, got {s!r}"
        return s

    def go(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()

    def finish(self) -> int:
        self.p.stdin.close()
        return self.p.wait(timeout=60)

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=30)


@pytest.fixture
def g(sim, tmp_path):
    require_built(GENV, SHIM)
    return G(sim, tmp_path / "genv")


def test_outside_an_environment(g):
    g.py("""
        import genv.sdk as s
        assert s.active() is False and s.eid() is None
        for f in (s.attached, s.configuration, s.attach, s.detach, lambda: s.configure(s.Env.Config(name="x"))):
            try:
                f()
            except RuntimeError as e:
                assert str(e) == "Not running in an active environment", e
            else:
                raise AssertionError(f"{f} did not raise")
        with s.lock():  # nothing to lock
            pass
    """)


def test_activate_configures_attaches_and_is_seen_by_the_cli(g):
    c = g.spawn("""
        import json, os, sys, genv.sdk as s
        cfg = s.Env.Config(name="sdk-env", gpus=2, gpu_memory="4g")
        with s.activate(config=cfg):
            print(json.dumps({"active": s.active(), "eid": s.eid(), "attached": list(s.attached()),
                              "config": [s.configuration().name, s.configuration().gpus, s.configuration().gpu_memory]}),
                  flush=True)
            sys.stdin.readline()
        print(json.dumps({"active": s.active(), "eid": s.eid()}), flush=True)
        sys.stdin.readline()
    """)
    inside = json.loads(c.expect("{"))
    pid = c.p.pid
    assert inside == {"active": True, "eid": str(pid), "attached": [0, 1], "config": ["sdk-env", 2, "4g"]}
    envs = g.envs()
    assert [(e["eid"], e["name"], e["pids"], e["attached"]) for e in envs] == [(str(pid), "sdk-env", [pid], [0, 1])]
    devs = g.devices()
    assert [[a["eid"] for a in d["attachments"]] for d in devs] == [[str(pid)], [str(pid)], [], []]
    # `genv status` inside the environment (as a child that inherited it would) sees it too.
    st = g.genv("status", "--json", env={"GENV_ENVIRONMENT_ID": str(pid)}).stdout
    assert "sdk-env" in st
    c.go()
    assert json.loads(c.expect("{")) == {"active": False, "eid": None}
    # Deactivated while its process still runs: the environment is gone.
    assert g.envs() == []
    assert c.finish() == 0


def test_environment_variables_set_inside_and_restored_exactly(g):
    g.py(f"""
        import os, warnings, genv.sdk as s
        os.environ["LD_PRELOAD"] = "libother.so"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ.pop("GENV_SHIM_PATH", None)
        before = dict(os.environ)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with s.activate(config=s.Env.Config(gpus=1)):
                assert os.environ["GENV_ENVIRONMENT_ID"] == str(os.getpid())
                assert os.environ["LD_PRELOAD"] == "{SHIM}:libother.so", os.environ["LD_PRELOAD"]
                assert os.environ["GENV_SHIM_PATH"] == "{SHIM}"
                # Not started under the shim: the device view goes through CUDA_VISIBLE_DEVICES.
                assert os.environ["CUDA_VISIBLE_DEVICES"].startswith("GPU-"), os.environ["CUDA_VISIBLE_DEVICES"]
                assert "," not in os.environ["CUDA_VISIBLE_DEVICES"]
                s.detach()
                assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
                s.attach(index=2)
                assert os.environ["CUDA_VISIBLE_DEVICES"].startswith("GPU-")
        assert dict(os.environ) == before
        assert any(issubclass(x.category, s.EnforcementWarning) and "NOT enforced" in str(x.message) for x in w), [str(x.message) for x in w]
    """)


def test_nested_activation_raises(g):
    g.py("""
        import genv.sdk as s
        with s.activate():
            try:
                with s.activate():
                    pass
            except RuntimeError as e:
                assert "Already running in an active environment" in str(e), e
            else:
                raise AssertionError("nested activate did not raise")
            assert s.active()
        assert not s.active()
    """)
    # Started inside an environment (genv exec): activating again is refused as well.
    p = g.genv("exec", "--", sys.executable, "-c", textwrap.dedent("""
        import genv.sdk as s
        assert s.active()
        try:
            with s.activate():
                pass
        except RuntimeError as e:
            print("refused:", e)
    """))
    assert "refused: Already running in an active environment" in p.stdout


def test_exception_inside_deactivates(g):
    p = g.py("""
        import json, os, subprocess, genv.sdk as s
        try:
            with s.activate(config=s.Env.Config(name="boom", gpus=1)):
                raise KeyError("inside")
        except KeyError:
            pass
        assert not s.active() and "GENV_ENVIRONMENT_ID" not in os.environ
        print(subprocess.run(["genv", "envs", "--json"], capture_output=True, text=True, check=True).stdout)
    """)
    assert json.loads(p.stdout) == []


def test_configure_attach_detach(g):
    g.py("""
        import genv.sdk as s
        E = s.Env.Config
        with s.activate():
            assert s.attached() == [] and s.configuration() == E()
            s.configure(E(name="renamed"))
            assert s.configuration() == E(name="renamed")
            try:
                s.attach()
            except RuntimeError as e:
                assert "device count is not configured" in str(e), e
            else:
                raise AssertionError("attach without a device count")
            # configure replaces the whole configuration
            s.configure(E(gpus=1, gpu_memory="42mi"))
            assert s.configuration() == E(gpus=1, gpu_memory="42mi")
            assert s.attached() == []
            assert s.attach() == [0] and s.attached() == [0]
            assert s.attach(index=3) == [0, 3]
            s.detach(index=0)
            assert s.attached() == [3]
            s.detach()
            assert s.attached() == []
            try:
                s.attach(index=9)
            except ValueError as e:
                assert "invalid device index 9" in str(e), e
            else:
                raise AssertionError("index 9")
            s.configure(E(gpus=5))
            try:
                s.attach()
            except RuntimeError as e:
                assert "No available devices" in str(e), e
            else:
                raise AssertionError("5 of 4 devices")
            assert s.attached() == []
    """)


def test_devices_taken_by_another_environment(g):
    holder = g.spawn("""
        import sys, genv.sdk as s
        with s.activate(config=s.Env.Config(gpus=3)):
            print("held", s.attached(), flush=True)
            sys.stdin.readline()
    """)
    holder.expect("held [0, 1, 2]")
    g.py("""
        import genv.sdk as s
        try:
            with s.activate(config=s.Env.Config(gpus=2)):
                raise AssertionError("got 2 of the 1 free device")
        except RuntimeError as e:
            assert "No available devices" in str(e), e
        with s.activate(config=s.Env.Config(gpus=1)):
            assert s.attached() == [3]
            try:
                s.attach(index=0)
            except RuntimeError as e:
                assert str(e) == "Device 0 is not available", e
    """)
    assert holder.finish() == 0


def test_bad_values(g):
    g.py("""
        import genv.sdk as s
        E = s.Env.Config
        def raises(exc, f, *want):
            try:
                f()
            except exc as e:
                for w in want:
                    assert w in str(e), (w, str(e))
            else:
                raise AssertionError(f"no {exc.__name__}: {want}")
        raises(ValueError, lambda: E(gpus=-1), "invalid device count -1")
        raises(ValueError, lambda: E(gpus=33), "invalid device count 33")
        raises(ValueError, lambda: E(gpu_memory="4x"), "invalid GPU memory '4x'", "42mi")
        raises(ValueError, lambda: E(gpu_memory="0"), "invalid GPU memory '0'")
        raises(ValueError, lambda: E(name=""), "invalid name")
        raises(TypeError, lambda: E(gpus=True), "gpus must be an int")
        raises(TypeError, lambda: E(gpus="2"), "gpus must be an int")
        raises(TypeError, lambda: E(gpu_memory=4.5), "gpu_memory must be a str")
        assert E(gpu_memory=1024).gpu_memory == "1024"
        def act(**kw):
            with s.activate(**kw):
                pass
        raises(ValueError, lambda: act(eid="has space"), "invalid environment identifier")
        raises(ValueError, lambda: act(eid="x" * 64), "invalid environment identifier")
        raises(TypeError, lambda: act(config={"gpus": 1}), "Env.Config")
        assert not s.active()
        with s.activate():
            raises(TypeError, lambda: s.configure({"gpus": 1}), "Env.Config")
            raises(TypeError, lambda: s.attach(index="0"), "index must be an int")
            raises(ValueError, lambda: s.attach(index=-1), "invalid device index -1")
            raises(ValueError, lambda: s.detach(index=7), "invalid device index 7")
    """)
    assert g.envs() == []


def test_out_of_range_integers_and_odd_text_raise_value_error(g):
    """An int of any size out of range is a ValueError with the message of any other value out
    of range (not PyO3's OverflowError); a str that is not UTF-8 (lone surrogates, as
    os.fsdecode makes of such bytes) is a ValueError naming the input (not UnicodeEncodeError);
    the limits and the escaping are the CLI's."""
    g.py(r"""
        import genv.sdk as s
        from genv import _native as n
        E = s.Env.Config
        def message(f):
            try:
                f()
            except ValueError as e:
                assert type(e) is ValueError, repr(e)
                return str(e)
            raise AssertionError(f"no ValueError from {f}")
        huge = 2**70
        index_rule = "expected a whole number (0 for the first GPU)"
        count_rule = "expected a whole number from 0 to 32"
        with s.activate():
            eid = s.eid()
            for i in (huge, -huge, 2**64, 2**32):
                assert message(lambda: s.attach(index=i)) == f"invalid device index {i}: {index_rule}"
                assert message(lambda: s.detach(index=i)) == f"invalid device index {i}: {index_rule}"
            assert message(lambda: s.attach(index=-1)) == f"invalid device index -1: {index_rule}"
            assert message(lambda: n.set_config(eid, None, huge, None)) == f"invalid device count {huge}: {count_rule}"
            assert s.attached() == []
        for c in (huge, -huge, 2**63, -2**63 - 1):
            assert message(lambda: E(gpus=c)) == f"invalid device count {c}: {count_rule}"
            assert message(lambda: n.validate_config(None, c, None)) == f"invalid device count {c}: {count_rule}"
        assert message(lambda: E(gpus=33)) == f"invalid device count 33: {count_rule}"
        pid_rule = "expected the pid of a running process"
        for p in (huge, -1, 2**32):
            assert message(lambda: n.activate("x", p)) == f"invalid process id {p}: {pid_rule}"
            assert message(lambda: n.deactivate("x", p)) == f"invalid process id {p}: {pid_rule}"

        # Not UTF-8: the bytes os.fsdecode took, escaped as the CLI shows them.
        assert message(lambda: E(name="\udcff")) == r"invalid name '\xff': not valid UTF-8"
        assert message(lambda: E(gpu_memory="4\udcffg")) == r"invalid GPU memory '4\xffg': not valid UTF-8"
        assert message(lambda: E(name="\ud800")) == r"invalid name '\xed\xa0\x80': not valid UTF-8"
        def act(eid):
            with s.activate(eid=eid):
                pass
        assert message(lambda: act("a\udcff")) == r"invalid environment identifier 'a\xff': not valid UTF-8"
        assert message(lambda: n.parse_gpu_memory("\udcff")) == r"invalid GPU memory '\xff': not valid UTF-8"

        # The stored limits: at the limit kept as written, one past refused.
        at = "0" * 29 + "4g"
        assert E(gpu_memory=at).gpu_memory == at
        assert "at most 31 bytes" in message(lambda: E(gpu_memory="0" + at))
        wide = "é" * 31 + "n"
        assert len(wide.encode()) == 63
        E(name=wide)
        assert "use 1 to 63 bytes" in message(lambda: E(name="é" * 32))
        with s.activate(eid="e" * 63, config=E(name=wide, gpu_memory=at)):
            c = s.configuration()
            assert (s.eid(), c.name, c.gpu_memory) == ("e" * 63, wide, at), c

        # Control characters are shown escaped.
        assert message(lambda: E(name="a\x1b[31m")) == (
            r"invalid name 'a\x1b[31m': use 1 to 63 bytes of printable characters, not only spaces"
        )
        assert message(lambda: E(gpu_memory="4\x1bg")).startswith(r"invalid GPU memory '4\x1bg': ")
        assert n.quote("it's \x1b\n") == r"'it\'s \x1b\n'"
        assert n.quote("\udcff") == r"'\xff'"
    """)
    # A GENV_ENVIRONMENT_ID that genv never set: the messages show it escaped.
    p = g.py(r"""
        import genv.sdk as s
        for f in (s.attached, s.configuration):
            try:
                f()
            except RuntimeError as e:
                print(e)
        try:
            with s.activate():
                pass
        except RuntimeError as e:
            print(e)
    """, env={"GENV_ENVIRONMENT_ID": "a\x1b[31m"})
    assert "\x1b" not in p.stdout, p.stdout
    assert p.stdout.count(r"Environment 'a\x1b[31m' no longer exists") == 2, p.stdout
    assert r"Already running in an active environment ('a\x1b[31m')" in p.stdout, p.stdout
    # Not UTF-8 (the child's os.environ holds it as a lone surrogate).
    p = g.py(r"""
        import genv.sdk as s
        try:
            s.attached()
        except ValueError as e:
            print(e)
    """, env={"GENV_ENVIRONMENT_ID": "\udcff"})
    assert p.stdout.strip() == r"invalid environment identifier '\xff': not valid UTF-8", p.stdout
    assert g.envs() == []

def test_explicit_eid_joins(g):
    a = g.spawn("""
        import sys, genv.sdk as s
        with s.activate(eid="team", config=s.Env.Config(name="shared", gpus=1)):
            print("in", s.attached(), flush=True)
            sys.stdin.readline()
    """)
    a.expect("in [0]")
    b = g.spawn("""
        import sys, genv.sdk as s
        with s.activate(eid="team"):
            print("in", s.attached(), s.configuration().name, flush=True)
            sys.stdin.readline()
    """)
    b.expect("in [0] shared")
    (e,) = g.envs()
    assert e["eid"] == "team" and sorted(e["pids"]) == sorted([a.p.pid, b.p.pid])
    assert a.finish() == 0
    (e,) = g.envs()
    assert e["pids"] == [b.p.pid]
    assert b.finish() == 0
    assert g.envs() == []


def test_killed_process_environment_is_reaped(g):
    c = g.spawn("""
        import sys, genv.sdk as s
        with s.activate(config=s.Env.Config(name="doomed", gpus=4)):
            print("in", flush=True)
            sys.stdin.readline()
    """)
    c.expect("in")
    assert [e["name"] for e in g.envs()] == ["doomed"]
    c.kill()
    assert g.envs() == []
    # Its devices are free again.
    g.py("""
        import genv.sdk as s
        with s.activate(config=s.Env.Config(gpus=4)):
            assert s.attached() == [0, 1, 2, 3]
    """)


def test_children_run_in_the_environment(g):
    p = g.py("""
        import json, subprocess, sys, genv.sdk as s
        with s.activate(config=s.Env.Config(name="kids", gpus=2)):
            code = ("import json, os, pynvml as N; N.nvmlInit(); "
                    "print(json.dumps([os.environ['GENV_ENVIRONMENT_ID'], N.nvmlDeviceGetCount(), "
                    "'libgenv_shim.so' in open('/proc/self/maps').read()]))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            print(json.dumps([s.eid(), json.loads(out)]))
    """)
    eid, (child_eid, count, shim_loaded) = json.loads(p.stdout)
    assert child_eid == eid and shim_loaded
    # The child sees only the two attached GPUs of the machine's four (the shim's NVML view).
    assert count == 2


def test_lock_outside_or_without_devices_is_a_noop(g):
    g.py("""
        import genv.sdk as s
        with s.lock():
            with s.lock():
                pass
        with s.activate():
            with s.lock():
                pass
    """)
    assert g.genv("lock", "--", "sh", "-c", "exit 3", check=False).returncode == 3


def test_lock_never_follows_a_planted_link(g, tmp_path):
    # A private file that a link planted under a lock file's name points to: genv.sdk.lock()
    # must refuse it (one message), never open or chmod it. (Other users planting it:
    # tests/tests/hostile_files.rs; the CLI and the SDK share genv_state::lock.)
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    secret.chmod(0o600)
    uuid = g.devices()[0]["uuid"]
    locks = g.state / "locks"
    locks.mkdir()
    locks.chmod(0o1777)
    (locks / f"device-{uuid}.lock").symlink_to(secret)
    g.py("""
        import genv.sdk as s
        with s.activate(config=s.Env.Config(gpus=1)):
            assert s.attached() == [0]
            try:
                with s.lock():
                    raise AssertionError("locked through a planted link")
            except RuntimeError as e:
                assert "is a symbolic link" in str(e) and "device-" in str(e), e
    """)
    assert secret.stat().st_mode & 0o7777 == 0o600
    assert secret.read_text() == "secret\n"


# Takes the lock in environment argv[1] (joined with eid), reports, and holds it until told.
LOCKER = """
import sys, genv.sdk as s
with s.activate(eid=sys.argv[1], config=s.Env.Config(gpu_memory="20gi"), over_subscribe=True):
    for ix in map(int, sys.argv[2].split(",")):
        s.attach(index=ix, over_subscribe=True)
    print("ready", s.attached(), flush=True)
    sys.stdin.readline()
    with s.lock():
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    sys.stdin.readline()
"""


def test_lock_excludes_other_environments_not_own_processes(g):
    a1 = g.spawn(LOCKER, "env-a", "0")
    a1.expect("ready [0]")
    a2 = g.spawn(LOCKER, "env-a", "0")
    a2.expect("ready [0]")
    b = g.spawn(LOCKER, "env-b", "0")
    b.expect("ready [0]")
    a1.go()
    a1.expect("locked")
    # The same environment's other process is not blocked.
    a2.go()
    a2.expect("locked", timeout=10)
    # Another environment sharing the device waits for both.
    b.go()
    assert b.line(timeout=1.0) is None
    a1.go()
    a1.expect("released")
    assert b.line(timeout=1.0) is None
    a2.go()
    a2.expect("released")
    b.expect("locked", timeout=10)
    # ... and the CLI's lock waits for the SDK's.
    t0 = time.monotonic()
    cli = g.sim.spawn(GENV, "lock", "--", "sh", "-c", "echo cli-locked", env=g.env({"GENV_ENVIRONMENT_ID": "env-a"}),
                      stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert cli.poll() is None
    b.go()
    b.expect("released")
    assert cli.wait(timeout=10) == 0 and cli.stdout.read().strip() == "cli-locked"
    assert time.monotonic() - t0 >= 1.0
    for c in (a1, a2, b):
        assert c.finish() == 0


def test_killed_holder_releases_the_lock(g):
    a = g.spawn(LOCKER, "env-a", "1")
    a.expect("ready [1]")
    b = g.spawn(LOCKER, "env-b", "1")
    b.expect("ready [1]")
    a.go()
    a.expect("locked")
    b.go()
    assert b.line(timeout=1.0) is None
    a.kill()
    b.expect("locked", timeout=10)
    b.go()
    b.expect("released")
    assert b.finish() == 0


# Loops over the lock, logging who is inside; several devices attached in different orders.
HAMMER = """
import os, sys, time, genv.sdk as s
eid, order, log = sys.argv[1], sys.argv[2], sys.argv[3]
with s.activate(eid=eid, config=s.Env.Config(gpu_memory="20gi"), over_subscribe=True):
    for ix in map(int, order.split(",")):
        s.attach(index=ix, over_subscribe=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for _ in range(15):
        with s.lock():
            os.write(fd, f"+ {eid}\\n".encode())
            time.sleep(0.005)
            os.write(fd, f"- {eid}\\n".encode())
"""


def test_lock_several_processes_several_devices_mutual_exclusion(g, tmp_path):
    log = tmp_path / "lock.log"
    procs = []
    for eid, order in (("e1", "0,1"), ("e1", "0,1"), ("e2", "1,0"), ("e2", "1,0"), ("e3", "1,0")):
        procs.append(g.sim.spawn(sys.executable, "-c", HAMMER, eid, order, log, env=g.env(),
                                 stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    inside: list[str] = []
    for line in log.read_text().splitlines():
        sign, eid = line.split()
        if sign == "+":
            assert all(e == eid for e in inside), f"{eid} entered while {inside} held the devices"
            inside.append(eid)
        else:
            inside.remove(eid)
    assert inside == [] and len(log.read_text().splitlines()) == 2 * 15 * 5


def test_process_started_under_the_shim_is_enforced_in_process(g):
    # No environment yet, the shim preloaded (as in a Ray worker from genv.ray.runtime_env()),
    # and a fresh state without a device list: activate() must neither read NVML through the
    # shim nor let the shim decide "no environment" before the activation.
    p = g.py("""
        import ctypes, json, os, warnings, genv.sdk as s
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with s.activate(config=s.Env.Config(gpus=1, gpu_memory="1gi")):
                assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the shim gives the view
                cuda = ctypes.CDLL("libcuda.so.1")
                n, dev, ctx = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
                assert cuda.cuInit(0) == 0
                assert cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
                assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
                assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
                assert cuda.cuCtxSetCurrent(ctx) == 0
                free, total = ctypes.c_size_t(), ctypes.c_size_t()
                assert cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
                ptr = ctypes.c_uint64()
                over = cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(2 << 30))
                within = cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(512 << 20))
                print(json.dumps({"count": n.value, "total": total.value, "over": over, "within": within,
                                  "warnings": [str(x.message) for x in w]}))
    """, env={"LD_PRELOAD": SHIM})
    r = json.loads(p.stdout)
    assert r == {"count": 1, "total": 1 << 30, "over": 2, "within": 0, "warnings": []}


def test_ctrl_c_interrupts_a_lock_wait(g):
    a = g.spawn(LOCKER, "env-a", "0")
    a.expect("ready [0]")
    a.go()
    a.expect("locked")
    b = g.spawn("""
        import signal
        import genv.sdk as s
        # Started from a background job, Python inherits SIGINT ignored and never raises
        # KeyboardInterrupt: give it Python's handler whatever started the suite.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with s.activate(eid="env-b", config=s.Env.Config(gpu_memory="20gi"), over_subscribe=True):
            s.attach(index=0, over_subscribe=True)
            print("waiting", flush=True)
            try:
                with s.lock():
                    print("locked", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
    """)
    b.expect("waiting")
    time.sleep(0.5)
    b.p.send_signal(signal.SIGINT)
    b.expect("interrupted", timeout=10)
    assert b.p.wait(timeout=30) == 0
    assert a.finish() == 0


def test_forked_child_leaving_the_block_keeps_the_parent_active(g):
    g.py("""
        import os, genv.sdk as s
        from genv import _native
        with s.activate(config=s.Env.Config(name="parent")):
            e = s.eid()
            child = os.fork()
            if child:
                _, status = os.waitpid(child, 0)
                assert status == 0, status
                assert _native.env(e)["pids"] == [os.getpid()], _native.env(e)
        if child == 0:  # the child left the block too, restoring only its own variables
            os._exit(0 if not s.active() else 1)
        assert _native.env(e) is None and not s.active()
    """)


# --- A process started without the shim (issue 10, item 4) ---------------------------------------

# Prints the devices CUDA in this process uses (their UUIDs) after cuInit.
CUDA_HERE = """
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
def cuda_uuids():
    n = ctypes.c_int()
    assert cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
    out = []
    for i in range(n.value):
        dev, raw = ctypes.c_int(), (ctypes.c_ubyte * 16)()
        assert cuda.cuDeviceGet(ctypes.byref(dev), i) == 0 and cuda.cuDeviceGetUuid(raw, dev) == 0
        h = bytes(raw).hex()
        out.append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
"""


def test_without_the_shim_one_warning_per_process_naming_what_works(g):
    p = g.py(CUDA_HERE + """
import json, warnings, genv.sdk as s
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    for _ in range(3):
        with s.activate(config=s.Env.Config(gpus=1)):
            pass
print(json.dumps([str(x.message) for x in w if issubclass(x.category, s.EnforcementWarning)]))
""")
    warned = json.loads(p.stdout)
    assert len(warned) == 1, warned
    # Names the one thing that makes this process enforced, with the path to use.
    assert f"LD_PRELOAD={SHIM} python" in warned[0], warned[0]
    assert "genv.sdk.shim_path()" in warned[0] and "NOT enforced" in warned[0], warned[0]
    # Not the advice that cannot work: `genv exec` / an activated shell make activate() raise.
    assert "genv exec" not in warned[0], warned[0]


def test_without_the_shim_a_second_activation_on_other_devices_is_refused(g):
    p = g.py(CUDA_HERE + """
import json, os, subprocess, warnings, genv.sdk as s
warnings.simplefilter("ignore", s.EnforcementWarning)
gpu = {d["index"]: d["uuid"] for d in s._devices()}
out = {}
with s.activate(config=s.Env.Config(gpus=1)):
    out["first"] = s.attached()
    assert cuda.cuInit(0) == 0  # CUDA here is now fixed on the environment's GPU 0
    out["cuda"] = cuda_uuids() == [gpu[0]]
# The same device again: CUDA here can follow.
with s.activate(config=s.Env.Config(gpus=1)):
    out["same"] = s.attached()
# Someone else takes GPU 0: the next activation is given GPU 1, which CUDA here cannot reach.
holder = subprocess.Popen(["genv", "exec", "--index", "0", "--", "python", "-c", "print('held', flush=True); input()"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "held"
before = dict(os.environ)
try:
    with s.activate(eid="second", config=s.Env.Config(gpus=1)):
        out["second"] = ["activated", s.attached(), cuda_uuids()]
except RuntimeError as e:
    out["second"] = ["refused", str(e)]
out["restored"] = dict(os.environ) == before and not s.active()
out["left"] = [e["eid"] for e in json.loads(subprocess.run(["genv", "envs", "--json"], capture_output=True, text=True).stdout)]
holder.stdin.close()
holder.wait()
print(json.dumps(out))
""")
    r = json.loads(p.stdout)
    assert r["first"] == [0] and r["cuda"] and r["same"] == [0], r
    kind, msg = r["second"]
    assert kind == "refused", r
    assert "cannot activate environment 'second' here: CUDA in this process" in msg, msg
    assert "initialised on GPU 0, while the environment has GPU 1" in msg, msg
    assert f"LD_PRELOAD={SHIM} python" in msg, msg
    # Nothing left behind: the variables as before, only the holder's environment remains.
    assert r["restored"] and "second" not in r["left"] and len(r["left"]) == 1, r


def test_without_the_shim_cuda_initialised_before_activate_is_refused(g):
    p = g.py(CUDA_HERE + """
import genv.sdk as s
assert cuda.cuInit(0) == 0  # every GPU of the machine
try:
    with s.activate(config=s.Env.Config(gpus=1)):
        print("activated")
except RuntimeError as e:
    print(e)
assert not s.active() and s._native.envs() == []
""")
    assert "initialised on GPUs 0, 1, 2, 3, while the environment has GPU 0" in p.stdout, p.stdout


def test_without_the_shim_attachment_changes_cuda_cannot_follow_are_warned_about(g):
    p = g.py(CUDA_HERE + """
import json, warnings, genv.sdk as s
out = []
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    with s.activate(config=s.Env.Config(gpus=1)):
        assert cuda.cuInit(0) == 0
        s.attach(index=2)
        s.detach(index=0)
    out = [str(x.message) for x in w if issubclass(x.category, s.EnforcementWarning)]
print(json.dumps(out))
""")
    w = json.loads(p.stdout)
    assert len(w) == 3, w  # the one about the shim, then one per change
    assert "initialised on GPU 0, while the environment has GPUs 0, 2" in w[1], w
    assert "initialised on GPU 0, while the environment has GPU 2" in w[2], w
    assert "does not follow the change" in w[2], w


def test_children_keep_the_environment_after_the_activating_process(g):
    """A process started inside `activate()` is a member (issue 10): it keeps the environment
    and its GPU after the block and the activating interpreter end, and its end frees both."""
    out = g.py("""
        import subprocess, genv.sdk
        with genv.sdk.activate(config=genv.sdk.Env.Config(gpus=1)):
            p = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(genv.sdk.eid(), p.pid)
    """).stdout.split()
    eid, child = out[0], int(out[1])
    try:
        deadline = time.monotonic() + 10
        while True:
            envs = {e["eid"]: e for e in g.envs()}
            if eid in envs and child in envs[eid]["members"]:
                break
            assert time.monotonic() < deadline, f"the child is no member: {envs}"
            time.sleep(0.05)
        assert envs[eid]["pids"] == [] and len(envs[eid]["attached"]) == 1
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(e["eid"] == eid for e in g.envs()):
        assert time.monotonic() < deadline, "the environment outlived its last member"
        time.sleep(0.05)

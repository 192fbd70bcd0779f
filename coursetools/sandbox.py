"""One sandbox per student: bubblewrap, limits, a watchdog, and nothing that outlives it.

:func:`run` starts :mod:`coursetools.harvest` in a fresh ``bwrap`` sandbox that has

- no network (its own network namespace: only a loopback), its own PID, IPC and UTS namespaces,
  a new session (no terminal), and it dies with the grader (``--die-with-parent``);
- a filesystem made of read-only binds of what Python needs (``/usr``, the Python installation, the
  virtual environment) and of a :class:`Runtime` (a copy of ``gradflow`` and the harvest runner, so
  no editable install leads back to the repository), a private ``/tmp``, ``/dev/shm`` and home folder
  (size-limited tmpfs; the home holds only the student's notebook), and nothing else: no repository,
  no ``dist/``, no submissions, no gradebook, no home folder of the instructor;
- when the grader runs as root: a user id of its own (one per parallel job), so it holds no
  capability, cannot read root's files, cannot signal any process outside, and its process limit
  counts only its own processes;
- limits: address space (memory + 1 GB of virtual slack), the resident memory of the whole process
  tree (watched every 0.1 s), processes, file size, CPU time, wall time per step and in total, and
  the bytes read back from its output and its answers channel.

Where bubblewrap is missing or does not work (macOS, some containers), :func:`available` says why
and grading refuses unless the instructor asks for ``unsafe=True``: then the runner is a plain
process with the same limits, in a temporary folder, and the notes say the grading was unsafe.
"""

import compileall
import importlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "Runtime", "RunResult", "available", "run", "Slots"]

HOME = "/home/student"
RUNTIME = "/opt/grader"
GB = 1_000_000_000


@dataclass
class Limits:
    memory: int = 2 * GB  # resident memory of the sandbox's process tree
    cell_timeout: float = 60.0  # seconds for one cell (probes: the exercise's own timeout per case)
    total_timeout: float = 600.0  # seconds for one notebook, reruns included
    startup_timeout: float = 120.0  # seconds until the runner is ready (imports)
    grace: float = 5.0  # seconds a step may overrun its limit before the sandbox is killed
    processes: int = 256  # processes and threads of the sandbox's own user id (RLIMIT_NPROC)
    tree_processes: int = 64  # processes in the sandbox's tree: more is a fork bomb
    file_bytes: int = 64_000_000  # largest file the student's code may write
    disk_bytes: int = 128_000_000  # each of the home folder, /tmp and /dev/shm
    output_bytes: int = 200_000  # of stdout and of stderr kept (the rest is read and dropped)
    answer_bytes: int = 96_000_000  # of the answers channel kept


class Runtime:
    """A read-only folder for the sandbox: ``gradflow`` (a copy), the harvest runner, checker modules.

    ``extra_modules`` are names of top-level modules outside gradflow that define exercises (a test
    fixture, a course's own checkers); their files are copied too. Use as a context manager.
    """

    def __init__(self, extra_modules=()):
        self.extra_modules = tuple(extra_modules)
        self.path = None

    def __enter__(self):
        self.path = Path(tempfile.mkdtemp(prefix="gradflow-runtime-"))
        import gradflow

        src = Path(gradflow.__file__).resolve().parent
        shutil.copytree(src, self.path / "gradflow", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(Path(__file__).with_name("harvest.py"), self.path / "harvest.py")
        for name in self.extra_modules:
            module = importlib.import_module(name)
            if name.split(".")[0] == "gradflow":
                continue
            if "." in name or not getattr(module, "__file__", None) or Path(module.__file__).name == "__init__.py":
                raise ValueError(f"{name}: only top-level single-file modules can be added to the grading runtime")
            shutil.copy2(module.__file__, self.path / Path(module.__file__).name)
        self._matplotlib_cache()
        compileall.compile_dir(self.path, quiet=1, workers=1)
        for p in [self.path, *self.path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return self

    def _matplotlib_cache(self):
        """The font list matplotlib builds on first use (seconds): copied so each sandbox skips it."""
        try:
            import matplotlib

            cache = Path(matplotlib.get_cachedir())
            fonts = sorted(cache.glob("fontlist-*.json"))
            if not fonts:
                import matplotlib.font_manager  # noqa: F401 - builds the cache

                fonts = sorted(cache.glob("fontlist-*.json"))
            if fonts:
                (self.path / "mplcache").mkdir()
                for f in fonts:
                    shutil.copy2(f, self.path / "mplcache" / f.name)
        except Exception:  # noqa: BLE001 - only a speed-up
            pass

    def __exit__(self, *exc):
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------- is there a sandbox?

_AVAILABLE = {}


def available():
    """(True, '') if bubblewrap sandboxes work here, else (False, why not)."""
    if "answer" in _AVAILABLE:
        return _AVAILABLE["answer"]
    answer = (True, "")
    if platform.system() != "Linux":
        answer = (False, f"bubblewrap sandboxes need Linux; this is {platform.system()}")
    elif not shutil.which("bwrap"):
        answer = (False, "bubblewrap (`bwrap`) is not installed: `apt-get install bubblewrap` (Debian, Ubuntu) "
                         "or `dnf install bubblewrap` (Fedora)")
    else:
        try:
            args = _bwrap_args(Path(tempfile.gettempdir()), None, 10_000_000, [sys.executable, "-I", "-c", "0"])
            proc = subprocess.run(args, capture_output=True, timeout=60, preexec_fn=_limits_fn(Limits(), None),
                                  stdin=subprocess.DEVNULL)  # fmt: skip
            if proc.returncode != 0:
                reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
                answer = (False, f"bubblewrap is installed but cannot make a sandbox here: {reason[0][:200]} "
                                 "(unprivileged user namespaces may be switched off: on Ubuntu 23.10 and later, "
                                 "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor "
                                 "profile for bwrap; in Docker, a container that allows them)")
        except (OSError, subprocess.TimeoutExpired) as err:
            answer = (False, f"bubblewrap did not run: {err}")
    _AVAILABLE["answer"] = answer
    return answer


# ---------------------------------------------------------------- the sandbox's command line


def _python_roots():
    """The folders Python needs: the virtual environment and the installation it was made from."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    return sorted(roots, key=lambda p: len(p.parts))


def _bind_tree(path, seen, args, dest=None):
    """``--ro-bind`` of ``path``, with its parent folders made world-readable first (bwrap makes them 0700)."""
    dest = Path(dest or path)
    for parent in reversed(dest.parents):
        if str(parent) != "/" and parent not in seen:
            seen.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    args += ["--ro-bind", str(path), str(dest)]


def _bwrap_args(runtime, uid, disk, command, files=None):
    # The private folders come first: a later bind under one of them (a virtual environment in a
    # clone under /tmp, as CI makes) is then mounted on top of the tmpfs instead of hidden by it.
    args, seen = ["bwrap", "--proc", "/proc", "--dev", "/dev"], set()
    for folder in ("/tmp", "/dev/shm", HOME):
        args += ["--perms", "0755", "--size", str(disk), "--tmpfs", folder]
        seen.add(Path(folder))
    for top in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            _bind_tree(p, seen, args)
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        if os.path.exists(etc):
            _bind_tree(Path(etc), seen, args)
    for root in _python_roots():
        if not any(root.is_relative_to(Path(a)) for a in ("/usr",)):
            _bind_tree(root, seen, args)
    if os.path.isdir("/sys/devices/system/cpu"):  # torch reads the CPU topology
        _bind_tree(Path("/sys/devices/system/cpu"), seen, args)
    if runtime is not None:
        _bind_tree(runtime, seen, args, RUNTIME)
    for name, fd in (files or {}).items():
        args += ["--perms", "0644", "--file", str(fd), f"{HOME}/{name}"]
    args += ["--chdir", HOME, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--hostname", "grader", "--die-with-parent", "--new-session", "--clearenv"]
    if os.getuid() != 0:
        args += ["--unshare-user", "--disable-userns"]  # unprivileged: a user namespace, and no nested one
    env = {"HOME": HOME, "USER": "student", "LOGNAME": "student", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PIP_NO_INDEX": "1", "MPLBACKEND": "Agg"}
    if uid:
        env["GRADING_UID"], env["GRADING_CHOWN"] = str(uid), f"{HOME}:/tmp:/dev/shm"
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args + ["--", *command]


def _limits_fn(limits, uid, nproc=None):
    address_space = limits.memory + GB

    def apply():
        os.umask(0o022)
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cpu = int(limits.total_timeout) + 30
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        n = nproc or limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))

    return apply


# ---------------------------------------------------------------- parallel jobs: one user id each


class Slots:
    """User ids for parallel sandboxes (as root): each job borrows one, so jobs cannot touch each other."""

    def __init__(self, jobs):
        import queue

        base = 1_600_000_000 + (os.getpid() % 100_000) * 64
        self.queue = queue.Queue()
        for i in range(max(1, jobs)):
            self.queue.put(base + i if os.getuid() == 0 else None)

    def borrow(self):
        return _Borrowed(self)


class _Borrowed:
    def __init__(self, slots):
        self.slots = slots

    def __enter__(self):
        self.uid = self.slots.queue.get()
        return self.uid

    def __exit__(self, *exc):
        self.slots.queue.put(self.uid)


# ---------------------------------------------------------------- running


@dataclass
class RunResult:
    events: list = field(default_factory=list)
    returncode: int | None = None
    killed: str | None = None  # why the grader stopped it: "step", "startup", "total", "memory", "processes"
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    answers_cut: bool = False
    seconds: float = 0.0
    peak_rss: int = 0

    def current_step(self, nb, memory=None):
        """The step of notebook ``nb`` that began but never ended (where it hung or crashed), else None.

        After a kill for memory, the first step that ended with a peak above ``memory`` (it may have
        ended just before the watchdog looked), if any.
        """
        mine = [e for e in self.events if e.get("nb") == nb]
        if memory:
            over = [e.get("step") for e in mine if e.get("event") == "end"
                    and isinstance(e.get("peak"), (int, float)) and e["peak"] > memory]  # fmt: skip
            if over:
                return over[0]
        open_steps = {}
        for e in mine:
            if e.get("event") == "begin":
                open_steps[e.get("step")] = True
            elif e.get("event") == "end":
                open_steps.pop(e.get("step"), None)
        steps = [k for k in open_steps if isinstance(k, int)]
        return max(steps) if steps else None

    def notebook_done(self, nb):
        return any(e.get("event") == "nb-done" and e.get("nb") == nb for e in self.events)

    def finished(self):
        return any(e.get("event") == "done" for e in self.events)

    def ready(self):
        return any(e.get("event") in ("ready", "begin", "done") for e in self.events)


def _drain(stream, limit, sink):
    """Read ``stream`` to the end; keep the first ``limit`` bytes in sink['data'], count them all."""
    kept = bytearray()
    total = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    sink["data"], sink["total"] = bytes(kept), total


def _read_events(fd, limit, sink, on_event):
    import json

    buf, total, cut = b"", 0, False
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                cut = True
                continue  # keep reading (the writer must not block), keep nothing more
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(event, dict):
                    on_event(event)
    sink["cut"] = cut


def _tree(pid):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _rss(procs):
    import psutil

    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill(proc, uid):
    import psutil

    for p in reversed(_tree(proc.pid)):
        try:
            p.kill()
        except psutil.Error:
            pass
    if uid:  # anything left with the sandbox's own user id (it cannot have left the PID namespace, but be sure)
        for p in psutil.process_iter(["uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real == uid:
                    p.kill()
            except psutil.Error:
                pass


def _memfd(name, data):
    fd = os.memfd_create(name, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run(plan, files, runtime, limits=None, uid=None, unsafe=False, step_timeouts=None):
    """Run the harvest runner on ``plan`` (a dict) in a sandbox; return a :class:`RunResult`. Never raises
    for anything the student's code does. ``files`` ({name: bytes}: the student's notebooks) go in the
    sandbox's home folder; ``step_timeouts[(nb, n)]`` is the limit of notebook nb's step n, in seconds."""
    import json

    limits = limits or Limits()
    step_timeouts = step_timeouts or {}
    result = RunResult()
    plan_bytes = json.dumps(plan, allow_nan=False).encode()
    read_fd, write_fd = os.pipe()
    stdin_fd = _memfd("plan", plan_bytes)
    file_fds = {name: _memfd("notebook", data) for name, data in files.items()}
    keep = [write_fd, *file_fds.values()]
    workdir = None
    if unsafe:
        workdir = Path(tempfile.mkdtemp(prefix="gradflow-unsafe-"))
        for name, data in files.items():
            (workdir / name).write_bytes(data)
        cmd = [sys.executable, "-I", "-B", str(Path(runtime) / "harvest.py"), str(write_fd)]
        env = {"HOME": str(workdir), "TMPDIR": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PIP_NO_INDEX": "1",
               "MPLBACKEND": "Agg"}
        uid = None  # no user id of its own: the Python installation may be readable by this user only
        cwd = workdir
    else:
        cmd = _bwrap_args(runtime, uid, limits.disk_bytes,
                          [sys.executable, "-I", "-B", f"{RUNTIME}/harvest.py", str(write_fd)], file_fds)
        env, cwd = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, "/"
    nproc = limits.processes
    if os.getuid() != 0 or not uid:  # the limit counts every process of the user: leave room for the others
        import psutil

        mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid())
        nproc = mine + limits.processes
    state = {"step": None, "since": time.monotonic()}
    lock = threading.Lock()

    def on_event(event):
        with lock:
            result.events.append(event)
            kind = event.get("event")
            if kind == "begin":
                state["step"], state["since"] = (event.get("nb"), event.get("step")), time.monotonic()
            elif kind in ("end", "ready", "skipped", "nb-ended"):
                state["step"], state["since"] = None, time.monotonic()

    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=cwd, pass_fds=keep, preexec_fn=_limits_fn(limits, uid, nproc),
                                start_new_session=True)  # fmt: skip
    except OSError as err:
        for fd in (read_fd, write_fd, stdin_fd, *file_fds.values()):
            os.close(fd)
        result.killed, result.stderr = "startup", f"the sandbox could not start: {err}"
        return result
    for fd in (write_fd, stdin_fd, *file_fds.values()):
        os.close(fd)
    out, err, ans = {}, {}, {}
    readers = [threading.Thread(target=_drain, args=(proc.stdout, limits.output_bytes, out), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, limits.output_bytes, err), daemon=True),
               threading.Thread(target=_read_events, args=(read_fd, limits.answer_bytes, ans, on_event), daemon=True)]
    for t in readers:
        t.start()
    procs, scanned = [proc.pid], 0.0
    try:
        while proc.poll() is None:
            time.sleep(0.1)
            now = time.monotonic()
            with lock:
                step, since, ready = state["step"], state["since"], result.ready()
            if now - scanned > 0.5:  # listing the tree scans all of /proc: twice a second is enough
                procs, scanned = _tree(proc.pid), now
            rss = _rss(procs)
            result.peak_rss = max(result.peak_rss, rss)
            reason = None
            if rss > limits.memory:
                reason = "memory"
            elif len(procs) > limits.tree_processes + 2:  # + bwrap and its init
                reason = "processes"
            elif now - start > limits.total_timeout:
                reason = "total"
            elif not ready and now - start > limits.startup_timeout:
                reason = "startup"
            elif step is not None and now - since > step_timeouts.get(step, limits.cell_timeout) + limits.grace:
                reason = "step"
            if reason:
                result.killed = reason
                _kill(proc, uid)
                break
        proc.wait()
    finally:
        _kill(proc, uid)  # whatever is left (nothing, unless the runner ended early)
        proc.wait()
        for t in readers:
            t.join(timeout=10)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - start
    result.stdout = out.get("data", b"").decode(errors="replace")
    result.stderr = err.get("data", b"").decode(errors="replace")
    result.stdout_bytes, result.stderr_bytes = out.get("total", 0), err.get("total", 0)
    result.answers_cut = ans.get("cut", False)
    return result

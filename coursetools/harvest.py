"""The harvest runner: runs one student's notebook inside the sandbox and hands back plain data.

This file is copied into the sandbox's read-only runtime and started there as a script
(``python -I harvest.py``); it imports nothing of ``coursetools``. It is the only place where a
student's code runs, and it decides nothing: every verdict is computed by the grader, outside.

It reads a *plan* (JSON) on standard input, written by :mod:`coursetools.judge` from the
:mod:`coursetools.plan` of each of the student's notebooks::

    {"modules": ["gradflow.checks.vanishing"],          # checker modules to import
     "notebooks": [                                      # one student's notebooks, in order
       {"steps": [{"kind": "cell", "label": "the set-up cell", "source": "...", "trusted": true, "timeout": 60},
                  {"kind": "probe", "grade_id": "ch1-ex1-tests",
                   "exercises": [{"index": 0, "name": "sigmoid_derivative", "cases": [...]}]}, ...],
        "skip": [4],                                     # steps not to run (they hung on a first try)
        "done": false}]}                                 # true: graded by an earlier run, not run again

It imports the checkers and the set-up cells' modules once, makes one IPython shell (so ``%magics``
and ``!commands`` work as in Jupyter; ``%pip`` and ``%conda`` only print that installing is off
while grading), and then forks, for each notebook, a child that runs its steps in order: a fresh
namespace and untouched modules for every notebook, without paying the imports again. A ``cell``
step runs code with a time limit; a ``probe`` step calls ``Exercise.run`` of each listed exercise
on the student's names and the cases drawn by the grader. Events go to a file descriptor (the first
argument; 3 by default), one JSON object a line, as they happen, so whatever ran before a crash or a
hang is kept::

    {"event": "ready", "seconds": 1.2, "cpu": 1.1}
    {"event": "begin", "nb": 0, "step": 3}
    {"event": "end", "nb": 0, "step": 3, "seconds": 0.1, "peak": 3e8, "error": "ValueError: boom",
     "timeout": false, "stderr": "...", "stdout": 12}
    {"event": "answers", "nb": 0, "step": 4, "grade_id": "...", "index": 0, "outputs": [...]}
    {"event": "nb-done", "nb": 0, "cpu": 1.3}
    {"event": "nb-ended", "nb": 0, "status": 0}
    {"event": "done", "seconds": 2.5, "cpu": 1.2}

The student's code shares this process, so it can forge or suppress any of these lines: the grader
treats them as claims to check, never as verdicts.
"""

import json
import os
import signal
import sys
import time

OUT_FD = 3
MAX_CAPTURE = 4_000  # characters of a cell's stderr/stdout kept for the grader's notes
HERE = os.path.dirname(os.path.abspath(__file__))


class CellTimeout(BaseException):
    """Raised in a cell that runs past its time limit (a BaseException: `except Exception` lets it through)."""


def _emit(fd, obj):
    try:
        data = (json.dumps(obj, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as err:
        data = (json.dumps({"event": "unreadable", "error": str(err)[:200]}) + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the student closed or broke the channel: nothing more can be handed back
        pass


class _Capture:
    """A text stream that keeps the first MAX_CAPTURE characters and counts the rest."""

    def __init__(self, name):
        self.name, self.kept, self.count = name, [], 0
        self.encoding, self.errors = "utf-8", "replace"

    def write(self, text):
        text = str(text)
        room = MAX_CAPTURE - sum(map(len, self.kept))
        if room > 0:
            self.kept.append(text[:room])
        self.count += len(text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def text(self):
        return "".join(self.kept)


def _drop_privileges():
    """As root in the sandbox: hand the writable folders to the sandbox's own user id, then become it."""
    uid = int(os.environ.pop("GRADING_UID", "0") or 0)
    folders = os.environ.pop("GRADING_CHOWN", "")
    if os.getuid() != 0 or uid <= 0:
        return
    for folder in folders.split(":"):
        if folder and os.path.isdir(folder):
            os.chown(folder, uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # real, effective and saved ids: there is no way back
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("could not leave root")


def _prepare_environment():
    """Matplotlib without a display and with its font cache copied (the runtime is read-only)."""
    tmp = os.environ.setdefault("TMPDIR", "/tmp")
    mpl = os.path.join(tmp, "matplotlib")
    os.environ["MPLCONFIGDIR"] = mpl
    os.environ.setdefault("MPLBACKEND", "Agg")
    cache = os.path.join(HERE, "mplcache")
    if os.path.isdir(cache) and not os.path.isdir(mpl):
        import shutil

        shutil.copytree(cache, mpl)
    os.environ.setdefault("IPYTHONDIR", os.path.join(tmp, "ipython"))


def _shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Plain"
    shell = InteractiveShell.instance(config=config)

    def no_install(line=""):
        print("installing packages is switched off while grading (the grader has the course's packages)")

    def no_plots(line=""):
        """%matplotlib: figures are drawn (Agg) but shown to no one while grading, whatever the backend asked."""

    for name in ("pip", "conda", "mamba", "micromamba", "uv"):
        shell.register_magic_function(no_install, "line", name)
    shell.register_magic_function(no_plots, "line", "matplotlib")
    shell.enable_gui = lambda gui=None: None  # a plain shell has no event loop to start
    import warnings

    warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")  # plt.show() with Agg
    return shell


def _describe(err):
    if err is None:
        return None
    if isinstance(err, CellTimeout):
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _alarm(seconds, label):
    def stop(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 2)  # if it is caught, ask again (the grader kills it later)
        raise CellTimeout(f"ran longer than its limit of {seconds:g} s and was stopped")

    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def run_cell(shell, step):
    """Run one cell's code with a time limit; never raises. Returns the 'end' event's fields."""
    out, err = _Capture("stdout"), _Capture("stderr")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    error = None
    try:
        _alarm(float(step.get("timeout", 60)), step.get("label", "a cell"))
        result = shell.run_cell(step["source"], store_history=False, silent=False)
        error = result.error_before_exec or result.error_in_exec
    except BaseException as exc:  # noqa: BLE001 - CellTimeout outside run_code, SystemExit, anything
        error = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        sys.stdout, sys.stderr = saved
    return {"error": _describe(error), "timeout": isinstance(error, CellTimeout), "stderr": err.text(),
            "stdout": out.count}


MISSING = object()


def run_probe(fd, nb, shell, step, registry):
    """Hand back the student's outputs on the grader's cases, one exercise at a time."""
    exercises = registry.get(step["grade_id"], [])
    for item in step["exercises"]:
        index, cases = item["index"], item["cases"]
        if index >= len(exercises):
            outputs = [{"__error__": "the checker of this exercise is missing in the sandbox", "kind": "grader"}]
        else:
            ex = exercises[index]
            values = [shell.user_ns.get(name, MISSING) for name in ex.answers]
            missing = [name for name, v in zip(ex.answers, values, strict=True) if v is MISSING]
            if missing:
                message = (f"`{missing[0]}` is not defined: run the cell that defines it (was it renamed "
                           "or deleted?)")
                outputs = [{"__error__": message, "kind": "missing"} for _ in cases]
            else:
                try:
                    outputs = ex.run(values, cases)
                except BaseException as exc:  # noqa: BLE001 - e.g. a KeyboardInterrupt from the student's code
                    outputs = [{"__error__": f"{ex.name}: {_describe(exc)}", "kind": "exception"} for _ in cases]
        _emit(fd, {"event": "answers", "nb": nb, "step": step["n"], "grade_id": step["grade_id"], "index": index,
                   "outputs": outputs})


def _cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


def _peak_rss():
    """This process's peak resident memory in bytes (VmHWM), or 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _warm(shell, notebooks):
    """Run each notebook's trusted set-up cell once in a scratch namespace, so its imports are paid once."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Capture("stdout"), _Capture("stderr")
    try:
        for nb in notebooks:
            steps = nb.get("steps") or [{}]
            if steps[0].get("trusted"):
                try:
                    code = compile(shell.transform_cell(steps[0]["source"]), "<set-up>", "exec")
                    exec(code, {"get_ipython": lambda: shell})  # noqa: S102 - the release's own set-up cell
                except BaseException:  # noqa: BLE001, S110 - only a speed-up: the notebook runs it again
                    pass
    finally:
        sys.stdout, sys.stderr = saved


def run_notebook(fd, shell, nb, plan, registry):
    """One notebook's steps, in this (forked, pristine) process; events carry the notebook's index."""
    skip = set(plan.get("skip", []))
    shell.user_ns["__name__"] = "__main__"
    for n, step in enumerate(plan["steps"]):
        step["n"] = n
        if n in skip:
            _emit(fd, {"event": "skipped", "nb": nb, "step": n})
            continue
        _emit(fd, {"event": "begin", "nb": nb, "step": n})
        began = time.monotonic()
        if step["kind"] == "cell":
            fields = run_cell(shell, step)
        else:
            saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _Capture("stdout"), _Capture("stderr")
            try:
                run_probe(fd, nb, shell, step, registry)
            finally:
                sys.stdout, sys.stderr = saved
            fields = {}
        _emit(fd, {"event": "end", "nb": nb, "step": n, "seconds": round(time.monotonic() - began, 3),
                   "peak": _peak_rss(), **fields})
    _emit(fd, {"event": "nb-done", "nb": nb, "cpu": _cpu()})


def main():
    start = time.monotonic()
    _drop_privileges()
    channel = int(sys.argv[1]) if len(sys.argv) > 1 else OUT_FD
    fd = os.dup(channel)  # keep our own copy of the channel
    os.close(channel)
    plan = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    _prepare_environment()
    sys.path.insert(0, HERE)  # the course's gradflow, copied into the runtime (read-only)
    os.chdir(os.environ.get("HOME", "/tmp"))
    try:
        import importlib

        from gradflow.checks import exercise

        for module in plan.get("modules", []):
            importlib.import_module(module)
        registry = {k: list(v) for k, v in exercise.REGISTRY.items()}  # before any student code can touch it
        shell = _shell()
        _warm(shell, plan["notebooks"])
    except BaseException as exc:  # noqa: BLE001 - the grader must hear why, whatever it is
        _emit(fd, {"event": "failed", "error": f"the sandbox could not start: {_describe(exc)}"})
        os._exit(3)
    _emit(fd, {"event": "ready", "seconds": round(time.monotonic() - start, 3), "cpu": _cpu()})
    # each notebook in a child forked from this pristine process: a fresh namespace and untouched modules,
    # without paying the imports again; this process never runs a student's code
    for nb, nb_plan in enumerate(plan["notebooks"]):
        if nb_plan.get("done"):
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                run_notebook(fd, shell, nb, nb_plan, registry)
            finally:
                os._exit(0)  # no atexit handlers, no waiting for the student's threads
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = -1
                break
        _emit(fd, {"event": "nb-ended", "nb": nb, "status": status})
    _emit(fd, {"event": "done", "seconds": round(time.monotonic() - start, 3), "cpu": _cpu()})
    os._exit(0)


if __name__ == "__main__":
    main()

"""What the sandbox guarantees (coursetools.sandbox), looked at from inside one, and the pure-job command line.

One sandbox run looks around and reports through its cells' stderr (which comes back in the runner's
events): who it runs as, what it can see, read, write and reach. Then the refusal without a sandbox,
the unsafe mode, and `python -m coursetools.judge` as a batch system would run it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import grading_demo as gd  # noqa: E402

from coursetools import assign, sandbox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
needs_sandbox = pytest.mark.usefixtures("grading_sandbox")

LOOK = r'''
import json, os, socket, sys
seen = {"uid": os.getuid(), "root": sorted(os.listdir("/")), "home": os.environ.get("HOME"), "cwd": os.getcwd(),
        "files": sorted(os.listdir(".")), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "env": sorted(os.environ), "hostname": socket.gethostname(), "repo": os.path.exists(REPO + "/gradflow"),
        "caps": open("/proc/self/status").read().split("CapEff:")[1].split()[0]}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    seen["net"] = "open"
except OSError as err:
    seen["net"] = type(err).__name__
for path in ("/usr/x", sys.prefix + "/x", "/opt/grader/gradflow/x", "/etc/x"):
    try:
        open(path, "w")
        seen.setdefault("wrote", []).append(path)
    except OSError:
        pass
open("mine.txt", "w").write("ok")
open("/tmp/mine.txt", "w").write("ok")
try:
    open("/tmp/big", "wb").write(b"0" * 200_000_000)
    seen["big"] = "written"
except OSError as err:
    seen["big"] = err.errno
sys.stderr.write(json.dumps(seen))
'''


@needs_sandbox
def test_inside_the_sandbox(tmp_path):
    look = {"kind": "cell", "label": "look", "source": LOOK.replace("REPO", repr(str(ROOT))), "timeout": 60}
    plan = {"modules": [], "notebooks": [{"steps": [look]}]}
    with sandbox.Runtime() as rt:
        uid = 1_600_000_000 + (os.getpid() % 100_000) * 64 + 63 if os.getuid() == 0 else None
        run = sandbox.run(plan, {"hw.ipynb": b'{"cells": []}'}, rt.path, sandbox.Limits(), uid=uid)
    end = next(e for e in run.events if e.get("event") == "end")
    seen = json.loads(end["stderr"])
    assert run.finished() and end["error"] is None
    assert seen["uid"] != 0 and seen["caps"] == "0000000000000000", "no root, no capability"
    assert seen["net"] != "open", "no network"
    assert not seen["repo"] and str(ROOT) not in json.dumps(seen["files"]), "no repository"
    pythons = {p.parts[1] for p in sandbox._python_roots() if len(p.parts) > 1}  # where CI keeps .venv: any folder
    assert set(seen["root"]) <= {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "opt", "proc", "sbin", "sys",
                                 "tmp", "usr"} | pythons, seen["root"]  # fmt: skip
    assert seen["home"] == seen["cwd"] == "/home/student" and seen["files"] == ["hw.ipynb"]
    assert len(seen["pids"]) <= 4, f"its own processes only: {seen['pids']}"  # bwrap's init, runner, notebook
    assert "wrote" not in seen, f"read-only: {seen.get('wrote')}"
    assert seen["big"] in (27, 28), "files are limited (EFBIG, ENOSPC)"
    assert seen["hostname"] == "grader" and "GRADING_SECRET" not in seen["env"] and "GRADING_UID" not in seen["env"]


def test_no_sandbox_means_no_grading_unless_asked(tmp_path, monkeypatch):
    course = gd.make_course(tmp_path / "course")
    subs = tmp_path / "subs"
    subs.mkdir()
    gd.write_nb(subs / "ann_demo.ipynb", gd.variant())
    monkeypatch.setitem(sandbox._AVAILABLE, "answer", (False, "bubblewrap (`bwrap`) is not installed"))
    with pytest.raises(assign.AssignError, match=r"no sandbox .* not installed.*--unsafe-no-sandbox"):
        assign.grade(gd.CHAPTER, subs, root=course, checkers=gd.CHECKERS, out=sys.stderr)
    rows, _ = assign.grade(gd.CHAPTER, subs, root=course, checkers=gd.CHECKERS, out=sys.stderr, unsafe=True, jobs=1)
    ann = next(r for r in rows if r.notebook == "demo")
    assert ann.total == 5 and any("WITHOUT a sandbox" in n for n in ann.notes)


@needs_sandbox
def test_one_notebook_is_a_pure_job(tmp_path):
    """The batch-system entry point gives the verdict that `make grade` gives, from the same secret."""
    course = gd.make_course(tmp_path / "course")
    assign.release(root=course, out=sys.stderr)
    sub = gd.write_nb(tmp_path / "doubler.ipynb", gd.variant({"demo-ex1-solution": "def square(x):\n    return 2 * x"}))
    env = dict(os.environ, GRADING_SECRET="s3cret",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "fixtures"), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "verdicts"
    proc = subprocess.run([sys.executable, "-m", "coursetools.judge", str(course / "dist/release/00_demo/demo.ipynb"),
                           str(sub), "--student", "doubler", "--chapter", gd.CHAPTER, "--out", str(out),
                           "--checkers", *gd.CHECKERS], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads((out / "demo.json").read_text())
    assert verdict["total"] == 3 and "you doubled x" in verdict["cells"]["demo-ex1-tests"]["exercises"][0]["message"]
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "doubler_demo.ipynb").write_bytes(sub.read_bytes())
    os.environ["GRADING_SECRET"] = "s3cret"
    try:
        assign.grade(gd.CHAPTER, subs, root=course, checkers=gd.CHECKERS, out=sys.stderr, jobs=1)
    finally:
        del os.environ["GRADING_SECRET"]
    saved = json.loads((course / "dist/grading/00_demo/results/doubler/demo.json").read_text())
    assert saved["cells"] == verdict["cells"] and saved["sha256"] == verdict["sha256"]


@needs_sandbox
def test_a_broken_setup_cell_is_the_graders_error_not_the_students(tmp_path):
    course = gd.make_course(tmp_path / "course")
    assign.release(root=course, out=sys.stderr)
    release = course / "dist" / "release" / gd.CHAPTER / "demo.ipynb"
    nb = json.loads(release.read_text())
    setup = next(c for c in nb["cells"] if c.get("id") == "d-setup")
    setup["source"] = "".join(setup["source"]) + "\nraise RuntimeError('the data file is missing')"
    release.write_text(json.dumps(nb))
    subs = tmp_path / "subs"
    subs.mkdir()
    gd.write_nb(subs / "ann_demo.ipynb", gd.variant())
    (row,) = [r for r in assign.grade(gd.CHAPTER, subs, root=course, checkers=gd.CHECKERS, out=sys.stderr)[0]
              if r.notebook == "demo"]  # fmt: skip
    assert row.status == "error" and any("grader: could not be graded: the set-up cell raised RuntimeError" in n
                                         for n in row.notes), row.notes  # fmt: skip
    page = (course / "dist/grading/00_demo/feedback/ann/demo.html").read_text()
    assert "problem on the grader&#x27;s side" in page and "the data file" not in page.split("<h2>Notes")[0]

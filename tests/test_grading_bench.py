"""The grading leg of the benchmark (coursetools.gradebench), on the demo assignment; and a grader that is
killed in the middle of a run leaves no sandbox behind. Nothing here is timed against a budget."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import grading_demo as gd  # noqa: E402
import grading_demo_checks  # noqa: E402, F401 - registers the demo's exercises

from coursetools import assign, gradebench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("grading_sandbox")


def test_grading_leg_on_the_demo(tmp_path):
    course = gd.make_course(tmp_path / "course")
    assert gradebench.ready_chapter(course, checkers=gd.CHECKERS) == (gd.CHAPTER, None)
    report = gradebench.measure(course, ns=(1, 2), jobs=2, log=lambda m: None, checkers=gd.CHECKERS)
    assert [r["students"] for r in report["rows"]] == [1, 2] and report["within_budget"]["full_marks"]
    assert report["floor_seconds"] > 0 and report["class_300_seconds"] > 0
    table = gradebench.render(report, " on 2 cores")
    assert "| 1 |" in table and "| 2 |" in table and "300 students" in table
    page = tmp_path / "page.md"
    page.write_text(f"before\n{gradebench.PAGE_BEGIN}\nold\n{gradebench.PAGE_END}\nafter\n")
    assert gradebench.update_page(page, table)
    text = page.read_text()
    assert "old" not in text and text.startswith("before") and text.endswith("after\n") and "| 2 |" in text
    assert gradebench.PAGE_BEGIN in (ROOT / "book" / "benchmark.md").read_text()


def test_a_killed_grader_leaves_no_sandbox(tmp_path):
    course = gd.make_course(tmp_path / "course")
    assign.release(root=course, out=sys.stderr)
    subs = tmp_path / "subs"
    subs.mkdir()
    gd.write_nb(subs / "slow_demo.ipynb", gd.variant(after={"demo-ex1-solution": ["import time\ntime.sleep(300)"]}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "fixtures"),
                                                       os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    grader = subprocess.Popen([sys.executable, "-m", "coursetools.assign", "--root", str(course), "grade", gd.CHAPTER,
                               str(subs), "--checkers", *gd.CHECKERS, "--cell-timeout", "600"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    psutil = pytest.importorskip("psutil")
    deadline = time.monotonic() + 180
    sandboxes = []
    while time.monotonic() < deadline and not sandboxes:
        time.sleep(0.5)
        kids = psutil.Process(grader.pid).children(recursive=True)
        sandboxes = [p for p in kids if "harvest" in " ".join(p.cmdline())]
    assert sandboxes, "the sandbox never started"
    time.sleep(1)
    tree = psutil.Process(grader.pid).children(recursive=True)
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, f"outlived the grader: {[' '.join(p.cmdline()) for p in alive]}"

"""Grading a class of honest, mistaken, damaged and hostile notebooks (issue 18's attack list).

One class is graded once (module fixture) on the demo assignment of tests/fixtures/grading_demo.py,
with short limits. Each submission must get its expected score and a note that says why; afterwards
the submissions folder, the course's files, the repository's gradflow and every other student's grade
are unchanged, nothing of the sandboxes is still running, and no feedback page leaks anything.
"""

import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import grading_demo as gd  # noqa: E402

from coursetools import assign  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("grading_sandbox")

SQ_OK = "def square(x):\n    return x * x"
EX2_OK = "def halve(x):\n    return x / 2\n\n\ndef precise_sum(x):\n    return x.double().sum()"
SQ = "demo-ex1-solution"
EX2 = "demo-ex2-solution"
LIMITS = {"cell_timeout": 4, "student_timeout": 120, "memory": 1_000_000_000, "jobs": 2}


def honest():
    return {
        # correct variants: full marks (5)
        "alice": (gd.variant(), 5, None),
        "numpy": (gd.variant({SQ: "import numpy as np\n\ndef square(x):\n    return np.square(x.numpy())",
                              EX2: "import math\n\ndef halve(x):\n    return 0.5 * x\n\n\n"
                                   "def precise_sum(x):\n    return math.fsum(x.tolist())"}), 5, None),
        "float32": (gd.variant({SQ: "def square(x):\n    return (x * x).float()"}), 5, None),
        "loops": (gd.variant({SQ: "def square(x):\n    flat = [v * v for v in x.reshape(-1).tolist()]\n"
                                  "    return torch.tensor(flat).reshape(x.shape)",
                              EX2: "def halve(x):\n    return x / 2\n\n\ndef precise_sum(x):\n    total = 0.0\n"
                                   "    for v in x.tolist():\n        total += v\n    return total"}), 5, None),
        "warner": (gd.variant({SQ: "import sys, warnings\n\ndef square(x):\n    warnings.warn('squaring')\n"
                                   "    print('debug', file=sys.stderr)\n    return x * x\n\n"
                                   "warnings.warn('careful')"}), 5, "printed to stderr (not an error)"),
        "magic": (gd.variant({SQ: "%matplotlib inline\n%pip install numpy\n!echo hello\n%time y = 1\n"
                                  "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n" + SQ_OK,
                              EX2: "%%time\n" + EX2_OK}), 5, None),
        # mistakes: each named
        "doubler": (gd.variant({SQ: "def square(x):\n    return x + x"}), 3, "you doubled x"),
        "multiplier": (gd.variant({EX2: EX2_OK.replace("x / 2", "x * 2")}), 3.5, "you multiplied by 2"),
        "single": (gd.variant({EX2: EX2_OK.replace("x.double().sum()", "x.float().sum()")}), 3.5,
                   "the precision is the problem"),
        "syntax": (gd.variant({SQ: "def square(x):\n    return x *"}), 3, "SyntaxError"),
        "hugeanswer": (gd.variant({EX2: EX2_OK.replace("return x / 2", "return torch.zeros(3_000_000)")}), 3.5,
                       "more than 2,000,000 numbers"),
        # damaged notebooks: repaired
        "copied": (gd.variant(after={"demo-ex1-tests": [gd.grade_cell("demo-ex1-tests", 2, "check_square(square)",
                                                                      id="pasted")]}), 5,
                   "a copy of the test cell demo-ex1-tests was ignored"),
        "remarked": (gd.variant({SQ: gd.grade_cell(SQ, 2, SQ_OK, id=SQ)}), 5, "lost its nbgrader metadata"),
        "stripped": (stripped(gd.variant()), 5, "lost its nbgrader metadata"),
        "deleted": (gd.variant(drop=("demo-ex1-tests",)), 5, "demo-ex1-tests was missing"),
        "unheaded": (gd.variant(drop=("d-heading",)), 5, "heading was changed or deleted"),
    }


def stripped(cells):
    for c in cells:
        c.metadata.pop("nbgrader", None)
    return cells


def hostile(course, subs):
    """Attacks: each graded to the score of its honest part; the attacked exercise earns nothing."""
    find = ("import os, sys\nfound = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    for f in ('cmdline', 'environ'):\n"
            "        try:\n            found.append(open(f'/proc/{pid}/{f}', 'rb').read().decode(errors='replace'))\n"
            "        except OSError:\n            pass\n"
            "    try:\n        found.append(os.readlink(f'/proc/{pid}/cwd'))\n    except OSError:\n        pass\n"
            f"hits = [x for x in found if {str(subs)!r} in x or {str(course)!r} in x or 'alice' in x]\n"
            "print('FOUND', len(found), 'HITS', hits, file=sys.stderr)\n")
    write = ("import os, sys\nfailed = []\n"
             f"targets = [{str(course / 'dist/grading/00_demo/adjustments.csv')!r},\n"
             f"           {str(course / 'dist/grading/00_demo/results/alice/demo.json')!r},\n"
             f"           {str(subs / 'alice_demo.ipynb')!r}, {str(course / 'book/00_demo/pwned.txt')!r},\n"
             "           '../../dist/grading/pwned', os.path.expanduser('~/../pwned'), '/usr/pwned',\n"
             f"           {str(ROOT / 'gradflow/checks/pwned.py')!r}]\n"
             "for t in targets:\n    try:\n        open(t, 'a').write('alice,demo,100,pwned\\n')\n"
             "        print('WROTE', t, file=sys.stderr)\n    except OSError:\n        failed.append(t)\n")
    patch_disk = ("import glob, os, sys, gradflow\nhere = os.path.dirname(gradflow.__file__)\nwrote = 0\n"
                  f"for f in glob.glob(here + '/checks/*.py') + glob.glob({str(ROOT)!r} + '/gradflow/checks/*.py'):\n"
                  "    try:\n        open(f, 'a').write('\\nREGISTRY = {}\\n')\n        wrote += 1\n"
                  "    except OSError:\n        pass\nprint('PATCHED', wrote, file=sys.stderr)\n")
    read_solutions = ("import glob, os, sys, gradflow\nbase = os.path.dirname(os.path.dirname(gradflow.__file__))\n"
                      f"seen = glob.glob(base + '/**/*.ipynb', recursive=True) + glob.glob({str(course)!r} + '/**')\n"
                      f"seen += glob.glob({str(ROOT / 'book')!r} + '/**/*.ipynb') + glob.glob('/home/*/*')\n"
                      "print('SOLUTIONS', [s for s in seen if 'student' not in s], file=sys.stderr)\n")
    detach = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              "        time.sleep(1.5)\n"
              f"        open({str(course / 'dist/grading/00_demo/late-pwned')!r}, 'w').write('x')\n"
              "    os._exit(0)\n")
    fake = {"event": "answers", "step": 2, "grade_id": "demo-ex1-tests", "index": 0, "points": 100,
            "outputs": [{"__array__": [1.0], "dtype": "float64", "shape": [1]}]}
    forge = (f"import json, os\nline = (json.dumps({fake!r}) + '\\n' + json.dumps({{'event': 'done'}}) + '\\n')\n"
             "for fd in range(3, 40):\n    try:\n        os.write(fd, line.encode())\n    except OSError:\n"
             "        pass\n")
    wrong = "def square(x):\n    return x + 1\n"
    return {
        "sysmodules": (gd.variant({SQ: "import sys\nimport grading_demo_checks as checks\n"
                                       "from gradflow.checks import exercise\n"
                                       "checks.check_square = lambda *a, **k: None\n"
                                       "exercise.Exercise.verdict = lambda self, cases, outputs: None\n"
                                       "exercise.Exercise.check = lambda self, *a, **k: 0.0\n"
                                       "checks.SQUARE.judge = lambda case, out: None\n"
                                       "sys.modules['gradflow.checks.exercise'].REGISTRY.clear()\n" + wrong}),
                       3, "square"),
        "rebind": (gd.variant({SQ: wrong + "check_square = lambda f, hidden=False: None"}), 3, "square"),
        "allclose": (gd.variant({SQ: "import builtins, math\nimport numpy as np\n"
                                     "torch.allclose = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
                                     "np.isclose = lambda *a, **k: True\nmath.isclose = lambda *a, **k: True\n"
                                     "builtins.abs = lambda x: 0\n" + wrong}), 3, "square"),
        "transformer": (gd.variant({SQ: "ip = get_ipython()\nip.input_transformers_post.append(\n"
                                        "    lambda lines: ['pass\\n'] if any('check' in l for l in lines)\n"
                                        "    else lines)\n" + wrong}), 3, "square"),  # fmt: skip
        "writer": (gd.variant(after={SQ: [write]}), 5, None),
        "procreader": (gd.variant(after={SQ: [find]}), 5, "HITS []"),
        "patcher": (gd.variant(after={SQ: [patch_disk]}), 5, "PATCHED 0"),
        "solreader": (gd.variant({SQ: wrong}, after={SQ: [read_solutions]}), 3, "SOLUTIONS []"),
        "detacher": (gd.variant(after={SQ: [detach]}), 5, None),
        "forger": (gd.variant({SQ: wrong + forge}), 3, "square"),
        "bigprint": (gd.variant(after={SQ: ["print('x' * 30_000_000)\nimport sys\nsys.stderr.write('e' * 10**7)\n"
                                            "open('big.bin', 'wb').write(b'0' * 300_000_000)"]}), 5, "OSError"),
        "memory": (gd.variant(after={SQ: ["blob = bytearray(10**10)"]}), 5, "MemoryError"),
        "hog": (gd.variant(after={SQ: ["hog = torch.ones(220_000_000)"]}), 5, "used more memory than the limit"),
        "forkbomb": (gd.variant(after={SQ: ["import os\nwhile True:\n    try:\n        os.fork()\n"
                                            "    except OSError:\n        pass"]}), 5, "than the limit"),
        "slowcell": (gd.variant(after={SQ: ["while True:\n    pass"]}), 5, "ran longer than its limit"),
        "hang": (gd.variant({SQ: SQ_OK + "\nimport signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                 "while True:\n    try:\n        time.sleep(0.1)\n    except BaseException:\n"
                                 "        pass"}), 3, "could not be interrupted"),
        "killer": (gd.variant(after={SQ: ["import os, signal\nfor pid in (os.getppid(), 1, -1, os.getpid()):\n"
                                          "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n"
                                          "        pass"]}), 5, "skipped"),
        "exiter": (gd.variant({EX2: EX2_OK + "\nimport os\nos._exit(0)"}), 2, "ended the Python process"),
    }


def digest(folder, skip=()):
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if any(rel.startswith(s) for s in skip) or "__pycache__" in rel:
            continue
        st = p.lstat()
        h.update(f"{rel}|{st.st_mode}|{st.st_mtime_ns}|".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def my_processes():
    psutil = pytest.importorskip("psutil")
    base = 1_600_000_000 + (os.getpid() % 100_000) * 64
    found = []
    for p in psutil.process_iter(["uids", "cmdline"]):
        try:
            if p.info["uids"] and base <= p.info["uids"].real < base + 64:
                found.append(" ".join(p.info["cmdline"] or []))
        except psutil.Error:
            pass
    kids = [c for c in psutil.Process().children(recursive=True) if "harvest" in " ".join(c.cmdline())]
    return found + [" ".join(c.cmdline()) for c in kids]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = gd.make_course(tmp_path_factory.mktemp("course"))
    assign.release(root=course, out=sys.stderr)
    subs = tmp_path_factory.mktemp("submissions")
    cases = {**honest(), **hostile(course, subs)}
    for student, (cells, _, _) in cases.items():
        gd.write_nb(subs / f"{student}_demo.ipynb", cells)
    gd.write_nb(subs / "alice_part_two.ipynb", gd.PART_TWO)
    shutil.copy(course / "dist" / "release" / gd.CHAPTER / "demo.ipynb", subs / "blank_demo.ipynb")
    (subs / "notjson_demo.ipynb").write_text("this is not a notebook")
    (subs / "mallory_demo.ipynb").symlink_to(course / "book" / gd.CHAPTER / "demo.ipynb")
    (subs / "Bob Smith.ipynb").write_text("{}")
    before = {"subs": digest(subs), "book": digest(course / "book"), "release": digest(course / "dist" / "release"),
              "gradflow": digest(ROOT / "gradflow")}  # fmt: skip
    rows, rejected = assign.grade(gd.CHAPTER, subs, root=course, checkers=gd.CHECKERS, out=sys.stderr,
                                  cell_timeout=LIMITS["cell_timeout"], student_timeout=LIMITS["student_timeout"],
                                  memory=LIMITS["memory"], jobs=LIMITS["jobs"])  # fmt: skip
    left = my_processes()
    after = {"subs": digest(subs), "book": digest(course / "book"), "release": digest(course / "dist" / "release"),
             "gradflow": digest(ROOT / "gradflow")}  # fmt: skip
    return {"course": course, "subs": subs, "cases": cases, "rejected": {p.name: r for p, r in rejected},
            "rows": {(r.student, r.notebook): r for r in rows}, "before": before, "after": after, "left": left}


def row(graded, student, notebook="demo"):
    return graded["rows"][(student, notebook)]


def result(graded, student, notebook="demo"):
    path = graded["course"] / "dist" / "grading" / gd.CHAPTER / "results" / student / f"{notebook}.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("student", list(honest()))
def test_honest_and_mistaken_work(graded, student):
    _, total, note = graded["cases"][student]
    r = row(graded, student)
    text = "; ".join(r.notes) + " " + json.dumps(result(graded, student)["cells"])
    assert (r.total, r.status) == (total, "graded"), text
    if note:
        assert note in text
    if total == 5:
        assert "raised" not in "; ".join(r.notes), r.notes


@pytest.mark.parametrize("student", ["sysmodules", "rebind", "allclose", "transformer", "writer", "procreader",
                                     "patcher", "solreader", "detacher", "forger", "bigprint", "memory", "hog",
                                     "forkbomb", "slowcell", "hang", "killer", "exiter"])  # fmt: skip
def test_attacks_earn_only_what_was_solved(graded, student):
    _, total, note = graded["cases"][student]
    r = row(graded, student)
    text = "; ".join(r.notes) + " " + json.dumps(result(graded, student)["cells"])
    assert (r.total, r.status) == (total, "graded"), text
    if note:
        assert note in text, text
    assert r.scores["demo-ex2-tests"] == (3 if student not in ("exiter",) else 0), "the other exercise is graded"


def test_nothing_was_changed_and_nothing_outlives_grading(graded):
    for what in ("subs", "book", "release", "gradflow"):
        assert graded["before"][what] == graded["after"][what], f"{what} changed during grading"
    assert graded["left"] == [], "processes of the sandboxes outlived grading"
    course = graded["course"]
    assert not list(course.rglob("*pwned*")) and not list(ROOT.glob("gradflow/**/pwned*"))
    adjustments = (course / "dist" / "grading" / gd.CHAPTER / "adjustments.csv").read_text()
    assert adjustments == "student,notebook,points,reason\n", "only the instructor writes adjustments"
    assert result(graded, "alice")["total"] == 5 and result(graded, "alice", "part_two")["total"] == 1


def test_unreadable_and_linked_files(graded):
    assert row(graded, "notjson").status == "invalid" and row(graded, "notjson").total == 0
    assert "not valid JSON" in row(graded, "notjson").notes[0]
    assert "symbolic link" in graded["rejected"]["mallory_demo.ipynb"]
    assert ("mallory", "demo") not in graded["rows"] and "Bob Smith.ipynb" in graded["rejected"]
    assert row(graded, "blank").total == 0 and row(graded, "blank", "part_two").status == "missing"


def test_feedback_holds_only_the_students_own_work(graded):
    folder = graded["course"] / "dist" / "grading" / gd.CHAPTER / "feedback"
    pages = {p.parent.name: p.read_text() for p in folder.glob("*/demo.html")}
    assert set(pages) >= set(graded["cases"]) - {"mallory"}
    for student, page in pages.items():
        grader_text = re.sub(r"<pre>.*?</pre>|<div class='md'>.*?</div>", "", page, flags=re.S)  # not the student's
        for secret in ("hidden-check", "BEGIN HIDDEN", str(graded["subs"]), str(graded["course"]), str(ROOT)):
            assert secret not in grader_text, (student, secret)
        assert "hidden-check" not in page and "BEGIN HIDDEN" not in page
        others = [s for s in graded["cases"] if s != student and len(s) > 5 and f"student {s}" in page]
        assert not others, f"{student}'s page names {others}"
        assert len(page) < 600_000
        if student in graded["cases"]:  # every block of code shown is the student's own cell
            own = {html.escape(c.source) for c in graded["cases"][student][0]}
            shown = re.findall(r"<pre>(.*?)</pre>|<div class='md'>(.*?)</div>", page, flags=re.S)
            shown = [a or b for a, b in shown]
            assert shown and all(block in own for block in shown), student
    assert "you doubled x" in pages["doubler"] and "2 / 2" in pages["float32"]
    assert len((folder / "bigprint" / "demo.html").read_text()) < 100_000


def test_a_later_run_merges_and_the_roster_and_adjustments_show(graded, tmp_path):
    course = graded["course"]
    book = course / "dist" / "grading" / gd.CHAPTER
    (book / "adjustments.csv").write_text("student,notebook,points,reason\nalice,demo,1,presented in class\n"
                                          "doubler,demo,-1,=HYPERLINK(\"x\")\n")  # fmt: skip
    late = tmp_path / "late"
    late.mkdir()
    gd.write_nb(late / "zoe_demo.ipynb", gd.variant())
    roster = tmp_path / "roster.txt"
    roster.write_text("# class list\nalice\nzoe\nnobody\n")
    rows, _ = assign.grade(gd.CHAPTER, late, root=course, checkers=gd.CHECKERS, roster=roster, out=sys.stderr, jobs=1)
    by = {(r.student, r.notebook): r for r in rows}
    assert by[("zoe", "demo")].total == 5
    assert by[("nobody", "demo")].status == "missing" and by[("nobody", "demo")].notes == ["nothing handed in"]
    assert (by[("alice", "demo")].auto, by[("alice", "demo")].total) == (5, 6)
    csv_text = (book / "grades.csv").read_text()
    assert "\ndoubler,00_demo,demo,0,3,,3,-1,2,5,graded," in csv_text and "=HYPERLINK" in csv_text
    fields = [f for line in csv.reader(io.StringIO(csv_text)) for f in line]
    assert not [f for f in fields if f[:1] and f[:1] in "=+@"], "no field a spreadsheet would run as a formula"
    assert csv_text.count("\n") == 1 + 2 * (len(graded["cases"]) + 4), "every student is still in the gradebook"
    # a result file edited by hand (or by anything) cannot give more than the points of a cell
    r = result(graded, "rebind")
    r["cells"]["demo-ex1-tests"]["score"] = 108
    (book / "results" / "rebind" / "demo.json").write_text(json.dumps(r))
    rows = assign.report(gd.CHAPTER, root=course, out=sys.stderr)
    assert next(x for x in rows if x.student == "rebind" and x.notebook == "demo").total == 5

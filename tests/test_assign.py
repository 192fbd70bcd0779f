"""Releasing and grading with nbgrader (coursetools.assign and nbgrader_config.py).

A small fixture assignment (built here, in a temporary course folder) always runs: its release is
checked cell by cell, and a folder of good, blank, broken and hostile submissions is graded. Then every
chapter under book/ that has nbgrader exercises is released and graded the same way (source = full
marks, blank release = zero, broken = scored without a crash); chapters are found when the tests run.
"""

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursetools import assign

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CHAPTER = "00_demo"
REGION = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
}
STUB = {"# YOUR CODE HERE", "raise NotImplementedError()", "YOUR ANSWER HERE"}


# ---------------------------------------------------------------- the fixture assignment


def solution_cell(grade_id, source):
    meta = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3, "solution": True, "task": False}
    return new_code_cell(source, metadata={"nbgrader": meta, "tags": ["hide-input"]})


def test_cell(grade_id, points, source):
    meta = {"grade": True, "grade_id": grade_id, "locked": True, "points": points, "schema_version": 3,
            "solution": False, "task": False}  # fmt: skip
    return new_code_cell(source, metadata={"nbgrader": meta, "tags": ["remove-cell"]})


test_cell.__test__ = False  # a notebook-cell builder, not a pytest test


DEMO = [
    new_markdown_cell("# A demo assignment\n\nTwo exercises."),
    new_code_cell("import math"),
    new_markdown_cell("**Exercise 1.** Write `square(x)`."),
    solution_cell(f"{CHAPTER}-ex1-solution",
                  "def square(x):\n    ### BEGIN SOLUTION\n    return x * x  # squared-secret\n    ### END SOLUTION"),
    test_cell(f"{CHAPTER}-ex1-tests", 2,
              "assert square(3) == 9, 'square(3) should be 9'\n"
              "### BEGIN HIDDEN TESTS\nassert square(-4) == 16, 'hidden-check-square'\n### END HIDDEN TESTS"),
    new_markdown_cell("**Exercise 2.** Write `halve(x)`."),
    solution_cell(f"{CHAPTER}-ex2-solution",
                  "def halve(x):\n    ### BEGIN SOLUTION\n    return x / 2  # halved-secret\n    ### END SOLUTION"),
    test_cell(f"{CHAPTER}-ex2-tests", 3,
              "assert halve(4) == 2\n### BEGIN HIDDEN TESTS\nassert halve(1) == 0.5  # hidden-check-halve\n"
              "### END HIDDEN TESTS"),
    new_code_cell("print('the rest of the chapter still runs', math.pi)"),
]  # fmt: skip
PART_TWO = [
    new_markdown_cell("# Part two"),
    solution_cell(f"{CHAPTER}-ex3-solution", "### BEGIN SOLUTION\nANSWER = 42\n### END SOLUTION"),
    test_cell(f"{CHAPTER}-ex3-tests", 1, "assert ANSWER == 42"),
]


def write_nb(path, cells):
    nbformat.write(new_notebook(cells=[nbformat.from_dict(c) for c in cells], metadata={"kernelspec": KERNELSPEC}),
                   path)  # fmt: skip


def make_course(root):
    """A course folder like the repository: our nbgrader_config.py, a book/ with one assignment."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    chapter = root / "book" / CHAPTER
    chapter.mkdir(parents=True)
    write_nb(chapter / "demo.ipynb", DEMO)
    write_nb(chapter / "part_two.ipynb", PART_TWO)
    (chapter / "notes.md").write_text("# A page of the book, not part of the assignment\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "book" / "99_no_exercises").mkdir()
    write_nb(root / "book" / "99_no_exercises" / "plain.ipynb", [new_markdown_cell("# Plain")])
    return root


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("course"))
    assign.release(root=root)
    return root


# ---------------------------------------------------------------- checking a release against its source


def split_regions(source, kind):
    """(lines outside the marked regions, lines inside them), markers dropped."""
    begin, end = REGION[kind]
    outside, inside, within = [], [], False
    for line in source.splitlines():
        stripped = line.strip()
        if begin in stripped:
            within = True
            head = line.split(begin)[0].rstrip()  # code before a marker on the same line
            if head.strip():
                outside.append(head)
            continue
        if end in stripped:
            within = False
            continue
        (inside if within else outside).append(line)
    return outside, inside


def assert_release_matches_source(source_path, release_path):
    """The release keeps every cell, strips solutions, hidden tests and outputs, and leaks nothing."""
    src, rel = nbformat.read(source_path, 4), nbformat.read(release_path, 4)
    name = source_path.name
    assert len(rel.cells) == len(src.cells), f"{name}: the release has {len(rel.cells)} cells, source {len(src.cells)}"
    secret_lines, public_text = set(), []
    for i, (s, r) in enumerate(zip(src.cells, rel.cells, strict=True)):
        where = f"{name} cell {i}"
        nbg = s.metadata.get("nbgrader", {})
        assert r.cell_type == s.cell_type, where
        if r.cell_type == "code":
            assert r.outputs == [] and r.execution_count is None, f"{where}: outputs not cleared"
        for marker in assign.MARKERS:
            assert marker not in r.source, f"{where}: '{marker}' left in the release"
        if nbg.get("solution"):
            outside, inside = split_regions(s.source, "solution")
            if s.cell_type == "markdown" and not inside:
                inside = s.source.splitlines()  # a written answer: the whole cell is the solution
                outside = []
            kept = [ln for ln in r.source.splitlines() if ln.strip() not in STUB]
            assert [ln.rstrip() for ln in kept] == [ln.rstrip() for ln in outside], f"{where}: the prompt changed"
            assert "NotImplementedError" in r.source or s.cell_type == "markdown", f"{where}: no stub"
            secret_lines.update(inside)
        elif nbg.get("grade"):
            outside, inside = split_regions(s.source, "hidden")
            assert r.source.splitlines() == outside, f"{where}: the visible tests changed"
            secret_lines.update(inside)
            public_text += outside
        else:
            assert r.source == s.source, f"{where}: changed by the release"
            public_text += s.source.splitlines()
        assert r.metadata.get("tags", []) == s.metadata.get("tags", []), f"{where}: tags changed"
    public = {ln.strip() for ln in public_text}
    secrets = {ln.strip() for ln in secret_lines if len(ln.strip()) >= 6 and not ln.strip().startswith("#")}
    released = "\n".join(c.source for c in rel.cells)
    leaked = [ln for ln in secrets - public if ln in released]
    assert not leaked, f"{name}: solution or hidden-test lines in the release: {leaked}"


# ---------------------------------------------------------------- release


def test_chapters_are_the_folders_with_solution_cells(course):
    assert assign.chapters(course) == [CHAPTER]


def test_release_strips_solutions_hidden_tests_and_outputs(course):
    release = course / "dist" / "release" / CHAPTER
    assert sorted(p.name for p in release.iterdir()) == ["demo.ipynb", "part_two.ipynb"], "only the notebooks"
    for nb in ("demo", "part_two"):
        assert_release_matches_source(course / "book" / CHAPTER / f"{nb}.ipynb", release / f"{nb}.ipynb")
    text = (release / "demo.ipynb").read_text()
    for secret in ("squared-secret", "halved-secret", "hidden-check-square", "hidden-check-halve", "x * x"):
        assert secret not in text
    assert "square(3) == 9" in text and "the rest of the chapter still runs" in text


def test_gradebook_holds_no_solution(course):
    db = (course / "dist" / "gradebook.db").read_bytes()
    assert b"squared-secret" not in db and b"halved-secret" not in db


def test_release_refuses_markers_outside_nbgrader_cells(tmp_path):
    root = make_course(tmp_path / "leaky")
    # a mistyped BEGIN marker: nbgrader sees no region and would publish the solution
    typo = new_code_cell("### BEGIN SOLUTON\nleaked = 1\n### END SOLUTION")
    write_nb(root / "book" / CHAPTER / "demo.ipynb", DEMO + [typo])
    with pytest.raises(assign.AssignError, match=r"demo.ipynb, cell 9 .*unknown marker '### BEGIN SOLUTON'"):
        assign.release(CHAPTER, root=root)
    hidden = new_code_cell("### BEGIN HIDDEN TESTS\nassert leaked\n### END HIDDEN TESTS")  # no nbgrader metadata
    write_nb(root / "book" / CHAPTER / "demo.ipynb", DEMO + [hidden])
    with pytest.raises(assign.AssignError, match=r"cell 9 .*'HIDDEN TESTS' markers in a cell without nbgrader grade"):
        assign.release(CHAPTER, root=root)
    unbalanced = solution_cell("x", "### BEGIN SOLUTION\nleaked = 1")
    write_nb(root / "book" / CHAPTER / "demo.ipynb", DEMO + [unbalanced])
    with pytest.raises(assign.AssignError, match=r"1 'BEGIN SOLUTION' but 0 'END SOLUTION'"):
        assign.release(CHAPTER, root=root)
    assert not (root / "dist" / "release").exists()


def test_release_of_an_unknown_chapter_names_the_chapters(course):
    with pytest.raises(assign.AssignError, match="chapters: 00_demo"):
        assign.release("01_nope", root=course)


def test_points_and_time_come_from_the_notebooks(tmp_path):
    root = make_course(tmp_path / "stats")
    (st,) = assign.stats(root)
    words = sum(len(c.source.split()) for c in DEMO + PART_TWO if c.cell_type == "markdown")
    assert (st.chapter, st.notebooks, st.exercises, st.points, st.words) == (CHAPTER, 2, 3, 6, words)
    assert st.exercise_minutes == 6 * assign.MINUTES_PER_POINT
    table = assign.StatsTable(root)
    assert table.rows == [(CHAPTER, 2, 3, "6", 5, 50, "0.9")]
    assert str(table).splitlines()[1].split() == [CHAPTER, "2", "3", "6", "5", "50", "0.9"]
    assert "<td" in table._repr_html_() and CHAPTER in table._repr_html_()


# ---------------------------------------------------------------- submission names and files


def test_submission_names(tmp_path):
    names = ["alice_demo.ipynb", "a.b-2_part_two.ipynb", "Bob Smith.ipynb", "carl_homework.ipynb",
             "dave_demo.txt", "_demo.ipynb", "e$ve_demo.ipynb", ".DS_Store"]  # fmt: skip
    for n in [*names, "gina_notes.ipynb"]:
        (tmp_path / n).write_text("{}")
    (tmp_path / "frank").mkdir()
    accepted, rejected = assign.sort_submissions(tmp_path, ["demo", "part_two"], ungraded=["notes"])
    assert accepted == {"alice": {"demo": tmp_path / "alice_demo.ipynb"},
                        "a.b-2": {"part_two": tmp_path / "a.b-2_part_two.ipynb"}}  # fmt: skip
    reasons = {p.name: r for p, r in rejected}
    assert set(reasons) == {"Bob Smith.ipynb", "carl_homework.ipynb", "dave_demo.txt", "_demo.ipynb",
                            "e$ve_demo.ipynb", "frank", "gina_notes.ipynb"}  # fmt: skip
    assert "has no exercises" in reasons["gina_notes.ipynb"]
    assert "not a notebook of this chapter" in reasons["carl_homework.ipynb"]
    assert "<student>_demo.ipynb" in reasons["Bob Smith.ipynb"]
    assert "student id" in reasons["e$ve_demo.ipynb"]


def test_precheck(tmp_path):
    bad = {"text": "not json", "list": "[1, 2]", "nocells": '{"cells": [], "metadata": {}, "nbformat": 4, '
           '"nbformat_minor": 5}', "broken": '{"cells": [{"cell_type": "code"}], "nbformat": 4}'}  # fmt: skip
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
    assert "not valid JSON" in assign.precheck(tmp_path / "text")
    assert "not a notebook" in assign.precheck(tmp_path / "list")
    assert "none of the exercise cells" in assign.precheck(tmp_path / "nocells")
    assert "malformed" in assign.precheck(tmp_path / "broken")
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(assign.MAX_NOTEBOOK_BYTES + 1)  # sparse: takes no disk space
    assert "too large" in assign.precheck(tmp_path / "huge")
    write_nb(tmp_path / "ok.ipynb", DEMO)
    assert assign.precheck(tmp_path / "ok.ipynb") is None


# ---------------------------------------------------------------- grading good, blank, broken and hostile work


def variant(replace=None, drop=(), extra=None):
    """The demo notebook with cells replaced ({index: cell or source}), dropped, or added."""
    cells = [nbformat.from_dict(json.loads(json.dumps(c))) for c in DEMO]
    for i, new in (replace or {}).items():
        if isinstance(new, str):
            cells[i].source = new
        else:
            cells[i] = new
    cells = [c for i, c in enumerate(cells) if i not in drop]
    return cells + (extra or [])


READ_SOLUTION = (  # works from dist/autograded/<student>/<chapter>/ in the real course layout
    "import json\n"
    "src = json.load(open('../../../../book/00_demo/demo.ipynb'))\n"
    "exec(''.join(src['cells'][3]['source']))"
)
WRITE_OUTSIDE = (
    "def square(x):\n    return x * x\n"
    "open('../../../../book/00_demo/pwned.txt', 'w').write('pwned')\n"
    "open('../../../../pwned-root.txt', 'w').write('pwned')"
)
WRONG_SQUARE = "def square(x):\n    return x + x"
RENAMED_TEST = test_cell("my-own-id", 2, "pass")

SUBMISSIONS = {
    "alice_demo.ipynb": variant(),  # the source: full marks
    "alice_part_two.ipynb": PART_TWO,
    "syntax_demo.ipynb": variant({3: "def square(x):\n    return x *"}),
    "exception_demo.ipynb": variant({1: "import math\nraise RuntimeError('oops')",
                                     3: "def square(x):\n    raise ValueError('boom')"}),  # fmt: skip
    "loop_demo.ipynb": variant({3: "while True:\n    pass"}),
    "bigprint_demo.ipynb": variant({8: "print('x' * 3_000_000)\nfor i in range(20_000):\n    print(i)"}),
    "deleted_demo.ipynb": variant({3: WRONG_SQUARE}, drop=(4,)),
    "renamed_demo.ipynb": variant({3: WRONG_SQUARE, 4: RENAMED_TEST}),
    "writer_demo.ipynb": variant({3: WRITE_OUTSIDE}),
    "reader_demo.ipynb": variant({3: READ_SOLUTION}),
}
RAW = {
    "notjson_demo.ipynb": "this is not a notebook",
    "nocells_demo.ipynb": '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
    "Bob Smith.ipynb": "{}",
    "carl_homework.ipynb": "{}",
}


def folder_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}|{st.st_mode}|{st.st_mtime_ns}|".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    for name, cells in SUBMISSIONS.items():
        write_nb(subs / name, cells)
    shutil.copy(course / "dist" / "release" / CHAPTER / "demo.ipynb", subs / "blank_demo.ipynb")
    for name, text in RAW.items():
        (subs / name).write_text(text)
    before = folder_digest(subs)
    log = Path(tmp_path_factory.mktemp("log")) / "out.txt"
    with open(log, "w") as out:
        rows, rejected = assign.grade(CHAPTER, subs, root=course, cell_timeout=6, student_timeout=120, jobs=2, out=out)
    return {
        "rows": {(r.student, r.notebook): r for r in rows},
        "rejected": {p.name: reason for p, reason in rejected},
        "out": log.read_text(),
        "unchanged": folder_digest(subs) == before,
        "csv": (course / "dist" / "grades.csv").read_text(),
        "chapter_csv": (course / "dist" / "grades" / f"{CHAPTER}.csv").read_text(),
    }


def row(graded, student, notebook="demo"):
    return graded["rows"][(student, notebook)]


def test_every_student_is_graded(graded):
    students = {s for s, _ in graded["rows"]}
    assert students == {"alice", "blank", "syntax", "exception", "loop", "bigprint", "deleted", "renamed",
                        "writer", "reader", "notjson", "nocells"}  # fmt: skip
    assert graded["unchanged"], "the submissions folder was modified"


def test_source_gets_full_marks_and_blank_gets_zero(graded):
    assert row(graded, "alice").total == 5 and row(graded, "alice", "part_two").total == 1
    assert row(graded, "alice").status == "graded" and not row(graded, "alice").notes
    blank = row(graded, "blank")
    assert blank.total == 0 and blank.status == "graded" and "NotImplementedError" in "; ".join(blank.notes)
    assert row(graded, "blank", "part_two").status == "missing"


@pytest.mark.parametrize(
    "student, total, note",
    [
        ("syntax", 3, "ex1-tests: NameError"),
        ("exception", 3, "ex1-tests: ValueError: boom"),
        ("loop", 3, "time limit per cell"),
        ("bigprint", 5, "characters in a cell (cut)"),
        ("deleted", 3, "test cells deleted or renamed, put back by the grader: 00_demo-ex1-tests"),
        ("renamed", 3, "test cells deleted or renamed, put back by the grader: 00_demo-ex1-tests"),
        ("writer", 5, "wrote files outside its folder (discarded): book/00_demo/pwned.txt"),
        ("reader", 3, "ex1-tests: NameError"),
    ],
)
def test_bad_submissions_are_scored_and_explained(graded, student, total, note):
    r = row(graded, student)
    assert r.status == "graded", r.notes
    assert r.total == total, r.notes
    assert any(note in n for n in r.notes), r.notes
    assert r.scores[f"{CHAPTER}-ex2-tests"] == 3, "the other exercises are still graded"
    if student == "renamed":
        assert any("unknown grade ids run as ordinary cells: my-own-id" in n for n in r.notes)
    feedback = graded["csv"]
    assert f"{student},{CHAPTER},demo," in feedback


@pytest.mark.parametrize("student, reason", [("notjson", "not valid JSON"), ("nocells", "none of the exercise cells")])
def test_unreadable_notebooks_get_zero_and_a_note(course, graded, student, reason):
    r = row(graded, student)
    assert r.total == 0 and r.status == "invalid" and reason in r.notes[0]
    page = (course / "dist" / "feedback" / student / CHAPTER / "demo.html").read_text()
    assert "score 0" in page and reason in page


def test_misnamed_files_are_rejected_by_name(graded):
    assert set(graded["rejected"]) == {"Bob Smith.ipynb", "carl_homework.ipynb"}
    assert "REJECTED Bob Smith.ipynb" in graded["out"] and "REJECTED carl_homework.ipynb" in graded["out"]


def test_hostile_code_cannot_reach_the_course(course, graded):
    assert not (course / "book" / CHAPTER / "pwned.txt").exists()
    assert not (course / "pwned-root.txt").exists()
    # the reader's relative path does lead to the source notebook from where the real course would run it
    cwd = course / "dist" / "autograded" / "reader" / CHAPTER
    assert (cwd / "../../../../book/00_demo/demo.ipynb").resolve() == course / "book" / CHAPTER / "demo.ipynb"
    assert "FileNotFoundError" in (cwd / "demo.ipynb").read_text()


def test_big_output_is_cut(course, graded):
    size = (course / "dist" / "autograded" / "bigprint" / CHAPTER / "demo.ipynb").stat().st_size
    assert size < 200_000


def test_outputs_csv_feedback_and_gradebook(course, graded):
    lines = graded["csv"].splitlines()
    assert lines[0] == (f"student,chapter,notebook,{CHAPTER}-ex1-tests,{CHAPTER}-ex2-tests,{CHAPTER}-ex3-tests,"
                        "total,max,status,notes")  # fmt: skip
    assert f"alice,{CHAPTER},demo,2,3,,5,5,graded," in lines
    assert graded["chapter_csv"] == graded["csv"]
    for student in ("alice", "blank", "loop", "writer"):
        page = course / "dist" / "feedback" / student / CHAPTER / "demo.html"
        assert page.exists() and "<html" in page.read_text()[:2000].lower()
    assert re.search(r"alice\s+demo\s+5 / 5\s+graded", graded["out"])
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'dist' / 'gradebook.db'}") as gb:
        assert gb.find_submission(CHAPTER, "alice").score == 6
        assert gb.find_submission(CHAPTER, "loop").score == 3


def test_a_runaway_student_is_stopped_and_the_others_graded(course, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    write_nb(subs / "slow_demo.ipynb", variant({8: "import time\nwhile True:\n    time.sleep(0.1)"}))
    write_nb(subs / "zoe_demo.ipynb", DEMO)
    rows, _ = assign.grade(CHAPTER, subs, root=course, cell_timeout=60, student_timeout=15, jobs=2, out=sys.stderr)
    by = {r.student: r for r in rows if r.notebook == "demo"}
    assert by["slow"].status == "timeout" and by["slow"].total == 0 and "limit per student" in by["slow"].notes[0]
    assert by["zoe"].total == 5
    psutil = pytest.importorskip("psutil")
    for p in psutil.process_iter():
        try:  # only this student's processes: other gradings may run on the same machine
            cwd, cmd = p.cwd(), " ".join(p.cmdline())
            mine = "gradflow-grade-" in cwd and ("--student=slow" in cmd or "/slow/" in cwd)
            assert not mine, f"a process of the stopped student still runs: {cmd}"
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass


def test_grading_copy_without_the_book(course, tmp_path):
    """What instructors.md suggests for a container: only nbgrader_config.py and dist/, no source notebooks."""
    copy = tmp_path / "grading"
    copy.mkdir()
    shutil.copy(course / "nbgrader_config.py", copy)
    (copy / "dist").mkdir()
    shutil.copy(course / "dist" / "gradebook.db", copy / "dist")
    shutil.copytree(course / "dist" / "release", copy / "dist" / "release")
    subs = tmp_path / "subs"
    subs.mkdir()
    write_nb(subs / "yan_demo.ipynb", DEMO)
    rows, _ = assign.grade(CHAPTER, subs, root=copy, out=sys.stderr)
    assert [(r.notebook, r.total) for r in rows] == [("demo", 5), ("part_two", 0)]
    assert not (copy / "book").exists()
    with pytest.raises(assign.AssignError, match="not a released chapter"):
        assign.grade("01_other", subs, root=copy, out=sys.stderr)


def test_command_line(course, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "x.ipynb").write_text("{}")
    assert assign.main(["--root", str(course), "grade", CHAPTER, str(subs)]) == 0
    assert assign.main(["--root", str(course), "grade", "no_such_chapter", str(subs)]) == 1
    assert assign.main(["--root", str(course), "release", CHAPTER]) == 0


# ---------------------------------------------------------------- the book's chapters


def book_chapters():
    return assign.chapters(ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", book_chapters())
def test_chapter_releases_and_grades(chapter, tmp_path):
    root = tmp_path / "course"
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "book" / chapter, root / "book" / chapter,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))  # fmt: skip
    assign.release(chapter, root=root)
    sources = sorted((root / "book" / chapter).glob("*.ipynb"))
    for src in sources:
        assert_release_matches_source(src, root / "dist" / "release" / chapter / src.name)

    subs = tmp_path / "subs"
    subs.mkdir()
    for src in sources:
        if not any(c.metadata.get("nbgrader", {}).get("grade") for c in nbformat.read(src, 4).cells):
            continue  # a notebook without exercises is released but not graded
        shutil.copy(src, subs / f"solution_{src.stem}.ipynb")
        shutil.copy(root / "dist" / "release" / chapter / src.name, subs / f"blank_{src.stem}.ipynb")
        nb = nbformat.read(src, 4)
        first = next((c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")), None)
        if first is not None:
            first.source = "this is not python ("
        nbformat.write(nb, subs / f"broken_{src.stem}.ipynb")
    before = folder_digest(subs)
    rows, rejected = assign.grade(chapter, subs, root=root, jobs=2, out=sys.stderr)
    assert not rejected and folder_digest(subs) == before
    by = {}
    for r in rows:
        by.setdefault(r.student, []).append(r)
    maximum = sum(r.max_score for r in by["solution"])
    assert maximum > 0
    assert sum(r.total for r in by["solution"]) == maximum, [(r.notebook, r.notes) for r in by["solution"]]
    assert sum(r.total for r in by["blank"]) == 0, [(r.notebook, r.scores) for r in by["blank"]]
    assert all(r.status == "graded" for r in by["broken"]), [r.notes for r in by["broken"]]
    assert sum(r.total for r in by["broken"]) < maximum



def test_a_kernel_that_never_started_is_recognised_for_one_retry():
    """A loaded machine can lose a kernel at start-up (nothing of the student's ran): grade retries once."""
    line = ("[AutogradeApp | ERROR] Error occurred while starting new kernel client for kernel b796ff62: "
            "Kernel didn't respond in 60 seconds")
    assert assign.KERNEL_START_FAILED.search(line)
    assert not assign.KERNEL_START_FAILED.search("AssertionError: block_grad is not implemented yet")

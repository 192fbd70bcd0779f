"""The book's exercises can be graded: every test cell is registered, follows the grading contract, and
the source notebook grades to full marks while the blank release grades to zero.

The contract (book/instructors.md, "Changing or adding exercises"): a notebook with test cells has a
set-up cell (the code cell that sets ``SEED = ...``) and a markdown heading "## Exercises" before its
exercise cells; every test cell's ``grade_id`` is registered by a checker module of ``gradflow.checks``
(``register(grade_id, *exercises)``), whose cases are plain data and whose judges never crash.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from coursetools import assign, plan
from gradflow.checks.exercise import load_registry, module_of, plain_cases

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
REGISTRY = load_registry()


def graded_cells(path):
    return plan.test_cells(plan.release_cells(json.loads(path.read_text(encoding="utf-8"))))


GRADED = [p for p in NOTEBOOKS if graded_cells(p)]
JUNK = [None, [], "x", [{"__array__": "nope"}], [{"__dict__": 5}], [{"__error__": "boom", "kind": "exception"}],
        [[1, [2, 3]]], [{"__float__": "nan"}], [{"__object__": "module", "repr": "<module>"}]]  # fmt: skip


def rel(p):
    return p.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", GRADED, ids=rel)
def test_every_test_cell_is_registered_with_its_points(path):
    tests = graded_cells(path)
    raw = json.loads(path.read_text(encoding="utf-8"))["cells"]
    points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"].get("points")
              for c in raw if c.get("metadata", {}).get("nbgrader", {}).get("grade")}  # fmt: skip
    missing = [g for g in tests if not REGISTRY.get(g)]
    assert not missing, f"{rel(path)}: test cells not registered in gradflow.checks (register(...)): {missing}"
    for gid, p in tests.items():
        assert p > 0 and p == float(points[gid]), f"{gid}: the grader gives {p} points, the cell says {points[gid]}"


@pytest.mark.parametrize("path", GRADED, ids=rel)
def test_notebook_follows_the_grading_contract(path):
    plan.check_release(plan.release_cells(json.loads(path.read_text(encoding="utf-8"))), rel(path))


def test_no_registration_without_a_test_cell():
    known = {g for p in GRADED for g in graded_cells(p)}
    ours = {g for g, exs in REGISTRY.items() if all((module_of(ex) or "").startswith("gradflow.") for ex in exs)}
    stale = sorted(ours - known)  # (a test's own demo checkers may be registered too)
    assert not stale, f"registered grade ids that no notebook has: {stale}"


@pytest.mark.parametrize("grade_id", sorted(REGISTRY))
def test_cases_are_plain_data_and_judges_never_crash(grade_id):
    for ex in REGISTRY[grade_id]:
        for seed in (0, 123_456_789):
            cases = plain_cases(ex, seed)
            assert cases, f"{ex.name}: no cases"
            for junk in JUNK + [[j] * len(cases) for j in JUNK]:
                assert isinstance(ex.verdict(cases, junk), str), f"{ex.name} accepted junk {junk!r:.60}"


def ready(chapter):
    """None if every notebook of the chapter can be graded, else why not."""
    for path in sorted((ROOT / "book" / chapter).glob("*.ipynb")):
        tests = graded_cells(path)
        if not tests:
            continue
        missing = [g for g in tests if not REGISTRY.get(g)]
        if missing:
            return f"{rel(path)}: not registered yet: {', '.join(missing)}"
        try:
            plan.check_release(plan.release_cells(json.loads(path.read_text(encoding="utf-8"))), rel(path))
        except plan.PlanError as err:
            return str(err)
    return None


@pytest.mark.slow
@pytest.mark.usefixtures("grading_sandbox")
@pytest.mark.parametrize("chapter", assign.chapters(ROOT))
def test_source_gets_full_marks_and_the_blank_release_zero(chapter, tmp_path):
    why = ready(chapter)
    if why:
        pytest.skip(why)
    course = tmp_path / "course"
    (course / "book").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "book" / chapter, course / "book" / chapter,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))  # fmt: skip
    assign.release(chapter, root=course, out=sys.stderr)
    subs = tmp_path / "subs"
    subs.mkdir()
    for src in sorted((course / "book" / chapter).glob("*.ipynb")):
        if graded_cells(src):
            shutil.copy(src, subs / f"solution_{src.stem}.ipynb")
            shutil.copy(course / "dist" / "release" / chapter / src.name, subs / f"blank_{src.stem}.ipynb")
    rows, rejected = assign.grade(chapter, subs, root=course, out=sys.stderr)
    assert not rejected
    for r in rows:
        if r.student == "solution":
            assert (r.total, r.status) == (r.max_score, "graded"), (r.notebook, r.notes, r.scores)
        else:
            assert (r.total, r.status) == (0, "graded"), (r.notebook, r.notes, r.scores)
            # a blank exercise gets a sentence that says what to do, not a traceback
            cells = json.loads((course / "dist/grading" / chapter / "results/blank" / f"{r.notebook}.json")
                               .read_text())["cells"]  # fmt: skip
            messages = [e.get("message") or "" for c in cells.values() for e in c.get("exercises", [])]
            assert messages and all(m.strip() for m in messages), (r.notebook, cells)
            page = (course / "dist/grading" / chapter / "feedback/blank" / f"{r.notebook}.html").read_text()
            assert not [m for m in messages + r.notes if "Traceback" in m] and "Traceback" not in page, r.notebook

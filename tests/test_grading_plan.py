"""coursetools.plan: which cells run when a notebook is graded, and how damaged notebooks are repaired.

Pure tests (no sandbox): the demo assignment of tests/fixtures/grading_demo.py, as released.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import grading_demo as gd  # noqa: E402

from coursetools import plan  # noqa: E402


def nb(cells):
    return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.from_dict(json.loads(json.dumps(c)))
                                                                      for c in cells])))  # fmt: skip


RELEASE = nb(gd.DEMO)  # the plan needs the release's structure only; the source has the same


def kinds(p):
    return [(s["kind"], "a cell" if s["label"].startswith("cell ") else s["label"]) for s in p.steps]


FULL = [("cell", "the set-up cell"), ("cell", "demo-ex1-solution"), ("probe", "demo-ex1-tests"),
        ("cell", "demo-ex2-solution"), ("probe", "demo-ex2-tests"), ("cell", "a cell")]  # fmt: skip


def test_the_setup_cell_and_the_exercises_run_nothing_else():
    p = plan.make_plan(RELEASE, nb(gd.DEMO))
    assert kinds(p) == FULL and not p.notes
    assert p.steps[0]["source"] == gd.SETUP and p.steps[0]["trusted"]
    assert "big = sum" not in json.dumps(p.steps), "the chapter's experiments are not run"


def test_the_setup_cell_comes_from_the_release_not_the_student():
    sub = gd.variant({"d-setup": "SEED = 0\nimport builtins\nbuiltins.abs = lambda x: 0"})
    assert plan.make_plan(RELEASE, nb(sub)).steps[0]["source"] == gd.SETUP


def test_a_copied_test_cell_is_ignored_and_a_remarked_solution_repaired():
    copy = gd.variant(after={"demo-ex1-tests": [gd.grade_cell("demo-ex1-tests", 2, "check_square(square)", id="p")]})
    p = plan.make_plan(RELEASE, nb(copy))
    assert kinds(p) == FULL and "a copy of the test cell demo-ex1-tests was ignored" in p.notes
    remarked = gd.grade_cell("demo-ex1-solution", 2, "def square(x):\n    return x * x", id="demo-ex1-solution")
    p = plan.make_plan(RELEASE, nb(gd.variant({"demo-ex1-solution": remarked})))
    assert kinds(p) == FULL and any("demo-ex1-solution had lost its nbgrader metadata" in n for n in p.notes)


def test_stripped_metadata_and_new_ids_are_repaired():
    stripped = nb(gd.DEMO)
    for c in stripped["cells"]:
        c["metadata"].pop("nbgrader", None)
    assert kinds(plan.make_plan(RELEASE, stripped)) == FULL
    for i, c in enumerate(stripped["cells"]):
        c["id"] = f"new-{i}"  # e.g. a tool that regenerates ids
    p = plan.make_plan(RELEASE, stripped)
    labels = [s["label"] for s in p.steps]
    assert [s["kind"] for s in p.steps] == [k for k, _ in FULL], labels
    assert labels[2] == "demo-ex1-tests" and labels[4] == "demo-ex2-tests"  # test cells: by their text
    assert labels[1] == "demo-ex1-solution" and labels[3] == "demo-ex2-solution"  # solutions: by order


def test_a_deleted_test_cell_is_checked_where_the_release_has_it():
    p = plan.make_plan(RELEASE, nb(gd.variant(drop=("demo-ex1-tests",))))
    assert kinds(p) == FULL
    assert any("demo-ex1-tests was missing" in n for n in p.notes)


def test_a_deleted_heading_and_added_cells():
    sub = gd.variant(drop=("d-heading",), after={"demo-ex1-solution": ["x = 1"]},
                     extra=[gd.code("y = 2", "mine")])  # fmt: skip
    p = plan.make_plan(RELEASE, nb(sub))
    labels = [s["label"] for s in p.steps]
    assert labels[:3] == ["the set-up cell", "demo-ex1-solution", "your cell 7"], labels
    assert labels[-1] == "your cell 13" and "heading was changed or deleted" in p.notes[0]


def test_the_students_own_cells_before_the_exercises_do_not_run():
    sub = gd.variant(after={"d-experiment": ["def square(x):\n    return x * x"]})
    assert "your cell" not in json.dumps(plan.make_plan(RELEASE, nb(sub)).steps)


def test_a_duplicated_solution_runs_both_copies_in_order():
    first = gd.solution_cell("demo-ex1-solution", "def square(x):\n    return 0", id="copy-1")
    sub = gd.variant(after={"demo-ex1-solution": [first]})
    p = plan.make_plan(RELEASE, nb(sub))
    assert [s["label"] for s in p.steps][1:3] == ["demo-ex1-solution", "demo-ex1-solution"]
    assert any("appears twice" in n for n in p.notes)


def test_junk_in_a_notebook_is_not_fatal():
    junk = nb(gd.DEMO)
    junk["cells"][6]["source"] = ["def square(x):\n", 5, "    return x * x"]
    junk["cells"][7]["metadata"] = "not a dict"
    junk["cells"].insert(3, "not a cell")
    p = plan.make_plan(RELEASE, junk)
    assert p.steps[1]["source"] == "def square(x):\n    return x * x"
    assert [s["kind"] for s in p.steps].count("probe") == 2


@pytest.mark.parametrize("broken, words", [
    (lambda cells: [c for c in cells if c.id != "d-setup"], "no set-up cell"),
    (lambda cells: [c for c in cells if c.id != "d-heading"], "no markdown heading '## Exercises'"),
    (lambda cells: [cells[0], cells[2], cells[6], cells[7], *cells[3:6]], "before the '## Exercises' heading"),
])  # fmt: skip
def test_a_release_that_breaks_the_contract_is_refused(broken, words):
    with pytest.raises(plan.PlanError, match=words):
        plan.check_release(plan.release_cells(nb(broken(gd.DEMO))), "demo.ipynb")


def test_points_come_from_the_release():
    assert plan.test_cells(plan.release_cells(RELEASE)) == {"demo-ex1-tests": 2.0, "demo-ex2-tests": 3.0}


def test_any_junk_in_a_submission_makes_a_plan():
    """Random damage to cells, metadata and ids: make_plan never raises (the grader must not crash)."""
    import random

    rng = random.Random(0)
    junk = [None, 5, "x", [], {}, [1, {"a": 2}], {"grade": [1]}, {"grade_id": ["ch"]}, {"grade_id": {"a": 1}},
            True, 1e308, "demo-ex1-tests"]  # fmt: skip
    for _ in range(300):
        sub = nb(gd.DEMO)
        for c in rng.sample(sub["cells"], 4):
            where = rng.choice(["metadata", "source", "id", "cell_type", "nbgrader", "grade_id"])
            value = rng.choice(junk)
            if where == "nbgrader":
                c["metadata"]["nbgrader"] = value
            elif where == "grade_id":
                c["metadata"].setdefault("nbgrader", {})["grade_id"] = value
            else:
                c[where] = value
        if rng.random() < 0.3:
            sub["cells"].insert(rng.randrange(len(sub["cells"])), rng.choice(junk))
        p = plan.make_plan(RELEASE, sub)
        assert p.steps[0]["trusted"] and sum(s["kind"] == "probe" for s in p.steps) == 2

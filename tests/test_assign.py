"""Releasing with nbgrader (coursetools.assign and nbgrader_config.py), and sorting handed-in files.

A small fixture assignment (built here, in a temporary course folder) is released and checked cell by
cell; every chapter of the book is released the same way. Grading is tested in tests/test_grading_*.py.
"""

import os
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
    # a secret line leaks when it stands as a line of the release; the same words inside a longer
    # line (a prompt quoting `layer.weight.mul_(scale)`, a loop with a comment) are not the answer
    released = {ln.strip() for c in rel.cells for ln in c.source.splitlines()}
    leaked = sorted(ln for ln in secrets - public if ln in released)
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


def test_the_release_needs_no_gradebook(course):
    assert sorted(p.name for p in (course / "dist").iterdir()) == ["logs", "release"]


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
    assert "<td" in table._repr_html_() and CHAPTER.replace("_", "_<wbr>") in table._repr_html_()


# ---------------------------------------------------------------- submission names and files


def test_submission_names(tmp_path):
    names = ["alice_demo.ipynb", "a.b-2_part_two.ipynb", "Bob Smith.ipynb", "carl_homework.ipynb",
             "dave_demo.txt", "_demo.ipynb", "e$ve_demo.ipynb", ".DS_Store"]  # fmt: skip
    for n in [*names, "gina_notes.ipynb"]:
        (tmp_path / n).write_text("{}")
    (tmp_path / "frank").mkdir()
    (tmp_path / "mallory_demo.ipynb").symlink_to(tmp_path / "alice_demo.ipynb")
    os.mkfifo(tmp_path / "pipe_demo.ipynb")
    accepted, rejected = assign.sort_submissions(tmp_path, ["demo", "part_two"], ungraded=["notes"])
    assert accepted == {"alice": {"demo": tmp_path / "alice_demo.ipynb"},
                        "a.b-2": {"part_two": tmp_path / "a.b-2_part_two.ipynb"}}  # fmt: skip
    reasons = {p.name: r for p, r in rejected}
    assert set(reasons) == {"Bob Smith.ipynb", "carl_homework.ipynb", "dave_demo.txt", "_demo.ipynb",
                            "e$ve_demo.ipynb", "frank", "gina_notes.ipynb", "mallory_demo.ipynb",
                            "pipe_demo.ipynb"}  # fmt: skip
    assert "has no exercises" in reasons["gina_notes.ipynb"]
    assert "not a notebook of this chapter" in reasons["carl_homework.ipynb"]
    assert "<student>_demo.ipynb" in reasons["Bob Smith.ipynb"]
    assert "student id" in reasons["e$ve_demo.ipynb"]
    assert "symbolic link" in reasons["mallory_demo.ipynb"] and "not a regular file" in reasons["pipe_demo.ipynb"]


def test_precheck(tmp_path):
    bad = {"text": "not json", "list": "[1, 2]", "nocode": '{"cells": [], "metadata": {}, "nbformat": 4, '
           '"nbformat_minor": 5}', "deep": "[" * 100_000}  # fmt: skip
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
    assert "not valid JSON" in assign.precheck(tmp_path / "text")
    assert "not a notebook" in assign.precheck(tmp_path / "list")
    assert "no code cells" in assign.precheck(tmp_path / "nocode")
    assert "not valid JSON" in assign.precheck(tmp_path / "deep")
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(assign.MAX_NOTEBOOK_BYTES + 1)  # sparse: takes no disk space
    assert "too large" in assign.precheck(tmp_path / "huge")
    (tmp_path / "link").symlink_to(tmp_path / "text")
    assert "could not be read" in assign.precheck(tmp_path / "link")
    write_nb(tmp_path / "ok.ipynb", DEMO)
    assert assign.precheck(tmp_path / "ok.ipynb") is None


def test_a_release_transform_may_change_text_only(tmp_path):
    root = make_course(tmp_path / "plain")

    def plain(nb, path):
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = "".join(cell["source"]).replace("Two exercises.", "Two exercises (plain).")
        return nb

    assign.release(CHAPTER, root=root, transform=plain, out=sys.stderr)
    assert "Two exercises (plain)." in (root / "dist" / "release" / CHAPTER / "demo.ipynb").read_text()

    def breaks(nb, path):
        nb["cells"][0]["id"] = "changed"

    with pytest.raises(assign.AssignError, match="may change their text only"):
        assign.release(CHAPTER, root=root, transform=breaks, out=sys.stderr)


def test_command_line(course, tmp_path, capsys):
    assert assign.main(["--root", str(course), "release", CHAPTER]) == 0
    assert assign.main(["--root", str(course), "stats"]) == 0 and CHAPTER in capsys.readouterr().out
    assert assign.main(["--root", str(course), "release", "no_such_chapter"]) == 1
    assert assign.main(["--root", str(course), "grade", "no_such_chapter", str(tmp_path)]) == 1
    assert "not a released chapter" in capsys.readouterr().err


# ---------------------------------------------------------------- the book's chapters


@pytest.mark.parametrize("chapter", assign.chapters(ROOT))
def test_chapter_releases_cleanly(chapter, tmp_path):
    root = tmp_path / "course"
    (root / "book").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    shutil.copytree(ROOT / "book" / chapter, root / "book" / chapter,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))  # fmt: skip
    assign.release(chapter, root=root, out=sys.stderr)
    for src in sorted((root / "book" / chapter).glob("*.ipynb")):
        assert_release_matches_source(src, root / "dist" / "release" / chapter / src.name)

"""What runs when a notebook is graded: the set-up cell of the release, then the student's exercises.

Pure functions of two notebooks (JSON dicts): the trusted **release** (what ``make release`` gave
the students) and the student's **submission**. Nothing here runs code.

The grading contract (also in ``book/instructors.md``): grading runs only

1. the release's **set-up cell**, the code cell that sets ``SEED = ...`` (the student's copy is ignored);
2. the student's **code cells after the markdown heading "## Exercises"**, in the student's order,
   except test cells (nbgrader ``grade`` cells), which are never run: where a test cell stands, the
   grader's probe hands the student's answers back instead (:mod:`coursetools.harvest`).

Each student cell is matched to a release cell by its nbgrader ``grade_id``, else by its cell
``id``, else (test cells) by its text, else by order; its role comes from the release, never from
the student's metadata. So a copied or duplicated test cell, a solution cell re-marked as a test
cell, or stripped metadata is repaired, with a note, and code cells the student added run too.
"""

import difflib
import re
from dataclasses import dataclass, field

__all__ = ["EXERCISES_HEADING", "PlanError", "Cell", "Plan", "release_cells", "setup_cell", "test_cells",
           "make_plan", "source_of"]

EXERCISES_HEADING = "## Exercises"
SETUP = re.compile(r"^SEED\s*=", re.MULTILINE)


class PlanError(Exception):
    """The release cannot be graded (no set-up cell, no exercises heading): the instructor must fix it."""


def source_of(cell):
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def _nbgrader(cell):
    """The nbgrader metadata of a cell, with only well-formed values (a submission's may be anything)."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    if not isinstance(nbg, dict):
        return {}
    return {k: v for k, v in nbg.items() if isinstance(v, (str, bool, int, float)) and not isinstance(k, bool)}


def _is_heading(cell):
    lines = source_of(cell).strip().splitlines()
    return cell.get("cell_type") == "markdown" and bool(lines) and lines[0].strip() == EXERCISES_HEADING


@dataclass
class Cell:
    """A release cell and its role: 'setup', 'heading', 'solution', 'test', 'code' or 'markdown'."""

    index: int
    id: str | None
    kind: str
    role: str
    grade_id: str | None
    source: str
    points: float = 0.0
    in_section: bool = False


def release_cells(nb):
    """The release's cells with their roles; raises PlanError if it has no set-up cell or no exercises."""
    cells, section = [], False
    raw = nb.get("cells", []) if isinstance(nb, dict) else []
    for i, c in enumerate(raw):
        nbg, kind, src = _nbgrader(c), c.get("cell_type"), source_of(c)
        if _is_heading(c):
            section, role = True, "heading"
        elif kind == "code" and nbg.get("grade") and not nbg.get("solution"):
            role = "test"
        elif nbg.get("solution"):
            role = "solution"
        elif kind == "code" and SETUP.search(src) and not section:
            role = "setup"
        else:
            role = "code" if kind == "code" else "markdown"
        points = float(nbg.get("points", 0) or 0) if role == "test" else 0.0
        cells.append(Cell(i, c.get("id"), kind, role, nbg.get("grade_id"), src, points, section))
    setups = [c for c in cells if c.role == "setup"]
    for c in setups[1:]:
        c.role = "code"  # only the first cell that sets SEED is the set-up cell
    return cells


def setup_cell(cells):
    return next((c for c in cells if c.role == "setup"), None)


def test_cells(cells):
    """{grade_id: points} of the test cells, in order."""
    return {c.grade_id: c.points for c in cells if c.role == "test"}


def check_release(cells, name="the notebook"):
    """Raise PlanError when the release does not follow the grading contract."""
    tests = [c for c in cells if c.role == "test"]
    if not tests:
        return
    if setup_cell(cells) is None:
        raise PlanError(f"{name} has test cells but no set-up cell (a code cell that sets `SEED = ...`)")
    if not any(c.role == "heading" for c in cells):
        raise PlanError(f"{name} has test cells but no markdown heading {EXERCISES_HEADING!r}")
    outside = [c.grade_id for c in cells if c.role in ("test", "solution") and not c.in_section]
    if outside:
        raise PlanError(f"{name}: exercise cells before the {EXERCISES_HEADING!r} heading: {', '.join(outside)}")
    ids = [c.grade_id for c in tests]
    dupes = sorted({g for g in ids if ids.count(g) > 1})
    if dupes or None in ids:
        raise PlanError(f"{name}: test cells need unique grade ids (repeated or missing: {dupes or [None]})")


@dataclass
class Plan:
    """The steps to run in the sandbox, and notes on what was repaired."""

    steps: list = field(default_factory=list)  # {"kind": "cell"|"probe", "label", "source"|"grade_id"}
    notes: list = field(default_factory=list)
    own: list = field(default_factory=list)  # indices of the student's cells of the exercises (test cells excluded)


def _similar(a, b):
    return difflib.SequenceMatcher(None, a.strip(), b.strip(), autojunk=False).ratio()


def _first_line(text):
    return next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")


def _match(student, release):
    """For each student cell, the release Cell it is (or None): grade_id, else id, else text, else order."""
    by_gid = {c.grade_id: c for c in release if c.grade_id and c.role in ("solution", "test")}
    by_id = {c.id: c for c in release if c.id}
    test_text = {" ".join(c.source.split()): c for c in release if c.role == "test"}
    matched = []
    for s in student:
        src = source_of(s)
        gid, sid = _nbgrader(s).get("grade_id"), s.get("id") if isinstance(s.get("id"), str) else None
        gid = gid if isinstance(gid, str) else None
        a, b = by_gid.get(gid), by_id.get(sid)
        if a and b and a is not b:  # the metadata and the id disagree: believe the text
            a = a if _similar(src, a.source) >= _similar(src, b.source) else b
        cell = a or b or test_text.get(" ".join(src.split()))
        if cell is not None and cell.kind != s.get("cell_type") and cell.role not in ("test", "solution"):
            cell = None  # a markdown cell turned into code (or back): the student's own cell
        matched.append(cell)
    # the rest: unmatched student code cells of the section take the release's unmatched code cells of the
    # section, first by their first line (a solution's `def name(...)`), then in order if the counts agree
    heading = next((i for i, s in enumerate(student) if _is_heading(s)), None)
    if heading is None:
        heading = next((i for i, c in enumerate(matched) if c is not None and c.in_section), len(student))
    used = {id(c) for c in matched if c is not None}
    free = [c for c in release if c.in_section and c.kind == "code" and c.role != "test" and id(c) not in used]
    loose = [i for i, (s, c) in enumerate(zip(student, matched, strict=True))
             if c is None and s.get("cell_type") == "code" and i > heading]  # fmt: skip
    for i in list(loose):
        first = _first_line(source_of(student[i]))
        same = [c for c in free if first and _first_line(c.source) == first]
        if len(same) == 1:
            matched[i] = same[0]
            free.remove(same[0])
            loose.remove(i)
    if free and len(loose) == len(free):
        for i, c in zip(loose, free, strict=True):
            matched[i] = c
    return matched


def make_plan(release_nb, student_nb, name="the notebook"):
    """The Plan for grading ``student_nb`` against ``release_nb`` (both notebook JSON dicts)."""
    release = release_cells(release_nb)
    check_release(release, name)
    plan = Plan()
    setup = setup_cell(release)
    if setup is not None:
        plan.steps.append({"kind": "cell", "label": "the set-up cell", "source": setup.source, "trusted": True})
    raw = student_nb.get("cells", []) if isinstance(student_nb, dict) else []
    student = [c if isinstance(c, dict) else {} for c in raw]
    matched = _match(student, release)
    heading = next((i for i, c in enumerate(student) if _is_heading(c)), None)
    in_section = [m is not None and m.in_section for m in matched]
    start = heading if heading is not None else next((i for i, f in enumerate(in_section) if f), len(student))
    if heading is None and any(c.role == "heading" for c in release):
        plan.notes.append(f"the {EXERCISES_HEADING!r} heading was changed or deleted; the exercise cells were "
                          "found by their ids")
    probes, solutions_seen, position = {}, set(), {}  # release index -> step index of its last occurrence
    for i, (s, m) in enumerate(zip(student, matched, strict=True)):
        if m is not None and not m.in_section:
            continue  # a cell of the chapter before the exercises: not run
        if m is None and i < start:
            continue  # the student's own cell before the exercises: not run either
        if m is None or m.role != "test":
            plan.own.append(i)
        if m is not None and m.role == "test":
            if m.grade_id in probes:
                plan.notes.append(f"a copy of the test cell {m.grade_id} was ignored")
                continue
            if _nbgrader(s).get("grade_id") != m.grade_id:
                plan.notes.append(f"the test cell {m.grade_id} had lost its nbgrader metadata (repaired)")
            probes[m.grade_id] = len(plan.steps)
            position[m.index] = len(plan.steps)
            plan.steps.append({"kind": "probe", "grade_id": m.grade_id, "label": m.grade_id})
            continue
        if s.get("cell_type") != "code":
            continue
        src = source_of(s)
        if m is not None and m.role == "solution":
            label = m.grade_id or f"cell {i + 1}"
            if m.index in solutions_seen:
                plan.notes.append(f"the solution cell {label} appears twice; both copies ran, in order")
            solutions_seen.add(m.index)
            gid = _nbgrader(s).get("grade_id")
            if gid and gid != m.grade_id:
                plan.notes.append(f"a cell marked {gid} is the release's {label} (repaired)")
            elif not _nbgrader(s).get("solution"):
                plan.notes.append(f"the solution cell {label} had lost its nbgrader metadata (repaired)")
        else:
            label = f"your cell {i + 1}" if m is None else f"cell {i + 1}"
        if m is not None:
            position[m.index] = len(plan.steps)
        plan.steps.append({"kind": "cell", "label": label, "source": src})
    # test cells the student deleted: probe where they stood in the release
    inserts = []
    for c in release:
        if c.role != "test" or c.grade_id in probes:
            continue
        before = [position[r.index] for r in release if r.index < c.index and r.index in position]
        inserts.append((max(before) + 1 if before else min(1, len(plan.steps)), c.index, c.grade_id))
        plan.notes.append(f"the test cell {c.grade_id} was missing; its exercise was checked where the release "
                          "has it")
    for at, _, grade_id in sorted(inserts, reverse=True):
        plan.steps.insert(at, {"kind": "probe", "grade_id": grade_id, "label": grade_id})
    for c in release:
        if c.role == "solution" and c.index not in solutions_seen and c.kind == "code":
            plan.notes.append(f"no solution cell {c.grade_id or ''} was found (deleted?)".replace("  ", " "))
    return plan

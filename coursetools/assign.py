"""Release and grade the chapters' exercises: the commands behind `make release` and `make grade`.

    python -m coursetools.assign release [CHAPTER] [--transform MODULE:FUNCTION]
    python -m coursetools.assign grade CHAPTER SUBMISSIONS_DIR [--jobs N] [--roster FILE] ...
    python -m coursetools.assign report CHAPTER [--roster FILE]   (remake grades.csv, grading nothing)
    python -m coursetools.assign stats      (points and estimated time per chapter)

Release: nbgrader's ``generate_assignment`` strips the solutions and hidden tests (this module checks
before and after that nothing leaks). Grading does not use nbgrader: each handed-in notebook is a
pure job (:mod:`coursetools.judge`) that runs the student's code in a bubblewrap sandbox
(:mod:`coursetools.sandbox`, :mod:`coursetools.harvest`) and decides the scores outside it, from
plain data; the results, the instructor's adjustments and the feedback live under ``dist/grading/``
(:mod:`coursetools.gradebook`, :mod:`coursetools.feedback`). See ``book/instructors.md``.
"""

import argparse
import html
import importlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["chapters", "release", "check_source", "check_release", "sort_submissions", "precheck", "grade",
           "report", "stats", "StatsTable", "Row", "AssignError", "main"]

# A submission is named <student>_<notebook>.ipynb. The student id has no underscore, so the first
# underscore separates it from the notebook's name (which may contain underscores).
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STUDENT_TIMEOUT = 600  # seconds of wall clock for one notebook of one student, reruns included
CELL_TIMEOUT = 60  # seconds for one cell of a student's exercises
MAX_NOTEBOOK_BYTES = 50_000_000  # a handed-in file larger than this is not graded


class AssignError(Exception):
    """A problem the instructor must fix (a missing chapter, a release that leaks a solution)."""


# ---------------------------------------------------------------- chapters


def _cells(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return []


def _nbgrader(cell):
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbg if isinstance(nbg, dict) else {}


def is_assignment_notebook(path):
    """True if the notebook has at least one nbgrader solution cell."""
    return any(_nbgrader(c).get("solution") for c in _cells(path))


def chapters(root="."):
    """The chapter folders under book/ that hold a notebook with nbgrader solution cells (sorted)."""
    book = Path(root) / "book"
    found = []
    for folder in sorted(p for p in book.iterdir() if p.is_dir()) if book.is_dir() else []:
        if any(is_assignment_notebook(nb) for nb in folder.glob("*.ipynb")):
            found.append(folder.name)
    return found


def notebooks(root, chapter):
    """The names (stems) of the chapter's notebooks."""
    return sorted(p.stem for p in (Path(root) / "book" / chapter).glob("*.ipynb"))


# ---------------------------------------------------------------- points and time per chapter

READING_WPM = 100  # words of prose per minute: slow, since the prose carries equations and code to follow
MINUTES_PER_POINT = 8  # an exercise of 2 points (a derivation check or a short function) is about 15 minutes


@dataclass
class ChapterStats:
    chapter: str
    notebooks: int
    exercises: int  # solution cells
    points: float  # sum of the test cells' nbgrader points
    words: int  # markdown words, exercises' prompts included

    @property
    def reading_minutes(self):
        return self.words / READING_WPM

    @property
    def exercise_minutes(self):
        return self.points * MINUTES_PER_POINT


def stats(root="."):
    """Per chapter with exercises: notebooks, exercises, points and prose words, from the notebooks' metadata."""
    result = []
    for chapter in chapters(root):
        nbs = sorted((Path(root) / "book" / chapter).glob("*.ipynb"))
        cells = [c for nb in nbs for c in _cells(nb)]
        result.append(ChapterStats(
            chapter,
            len(nbs),
            sum(1 for c in cells if _nbgrader(c).get("solution")),
            sum(float(_nbgrader(c).get("points", 0)) for c in cells if _nbgrader(c).get("grade")),
            sum(len("".join(c.get("source", "")).split()) for c in cells if c.get("cell_type") == "markdown"),
        ))  # fmt: skip
    return result


def _round5(minutes):
    return max(5, 5 * round(minutes / 5))


class StatsTable:
    """The table of :func:`stats`, shown as HTML in the book and as text in a terminal."""

    header = ("chapter", "notebooks", "exercises", "points", "reading (min)", "exercises (min)", "total (h)")

    def __init__(self, root="."):
        self.rows = [
            (s.chapter, s.notebooks, s.exercises, _fmt(s.points), _round5(s.reading_minutes),
             _round5(s.exercise_minutes), f"{(_round5(s.reading_minutes) + _round5(s.exercise_minutes)) / 60:.1f}")
            for s in stats(root)
        ]  # fmt: skip

    def __str__(self):
        cols = [self.header, *[tuple(map(str, r)) for r in self.rows]]
        widths = [max(len(c[i]) for c in cols) for i in range(len(self.header))]
        return "\n".join("  ".join([c[0].ljust(widths[0]), *(c[i].rjust(widths[i]) for i in range(1, len(c)))])
                         for c in cols)  # fmt: skip

    def _repr_html_(self):
        """Narrow enough for a phone (390 px): headers and chapter names wrap, and the table never scrolls."""
        pad = "padding: 0.1em 0.2em"
        align = lambda i: f"{pad}; text-align: {'right' if i else 'left'}"  # noqa: E731
        wrap = lambda text: (html.escape(text).replace(" (", "<br>(").replace("_", "_<wbr>")  # noqa: E731
                             .replace("notebooks", "note&shy;books").replace("exercises", "exer&shy;cises")
                             .replace("reading", "read&shy;ing"))
        head = "".join(f'<th style="{align(i)}">{wrap(h)}</th>' for i, h in enumerate(self.header))
        body = "".join(
            "<tr>" + "".join(f'<td style="{align(i)}">{wrap(str(v))}</td>' for i, v in enumerate(r)) + "</tr>"
            for r in self.rows
        )
        return (f'<div style="overflow-x: auto"><table style="font-size: 0.8em"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")


# ---------------------------------------------------------------- running nbgrader


@dataclass
class Run:
    returncode: int
    log: str
    seconds: float
    timed_out: bool = False

    def error(self):
        """The most telling line of nbgrader's log: the exception, else the first error line."""
        lines = [ln.strip() for ln in self.log.splitlines() if ln.strip()]
        raised = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Exit): ", ln)]
        errors = [ln for ln in lines if "[ERROR]" in ln and "Please see" not in ln]
        for line in raised[-1:] or errors[:1] or lines[-1:]:
            return line[:300]
        return f"nbgrader exited with code {self.returncode}"

    def save(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.log, encoding="utf-8")
        return path


def _kill_tree(pid):
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def nbgrader(args, cwd, timeout=None):
    """Run ``nbgrader ARGS`` in the folder ``cwd`` (which holds nbgrader_config.py); never raises."""
    # nbgrader calls the `alembic` command of its environment: put this Python's bin/ first on PATH
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)  # nbgrader and the kernels it started
            proc.wait()
        log.seek(0)
        text = log.read()
    return Run(proc.returncode, text, time.monotonic() - start, timed_out)


# ---------------------------------------------------------------- release


MARKER_LINE = re.compile(r"^\s*#*\s*(BEGIN|END) +[A-Z].*$", re.MULTILINE)  # e.g. a mistyped "### BEGIN SOLUTON"


def check_source(root, chapter):
    """Raise AssignError on a marker nbgrader would not strip: mistyped, unbalanced or in the wrong cell."""
    problems = []
    for nb in sorted((Path(root) / "book" / chapter).glob("*.ipynb")):
        for i, cell in enumerate(_cells(nb)):
            nbg = _nbgrader(cell)
            where = f"{nb.name}, cell {i} ({nbg.get('grade_id', 'no grade_id')})"
            found = [m.group(0).strip() for m in MARKER_LINE.finditer("".join(cell.get("source", "")))]
            for line in found:
                if line.lstrip("# ") not in MARKERS:
                    problems.append(f"{where}: unknown marker {line!r} (expected '### BEGIN SOLUTION' etc.)")
            text = " ".join(found)
            for kind, allowed in (("SOLUTION", nbg.get("solution")), ("HIDDEN TESTS", nbg.get("grade"))):
                begins, ends = text.count(f"BEGIN {kind}"), text.count(f"END {kind}")
                if begins != ends:
                    problems.append(f"{where}: {begins} 'BEGIN {kind}' but {ends} 'END {kind}'")
                if begins and not allowed:
                    cell_kind = "solution" if kind == "SOLUTION" else "grade (test)"
                    problems.append(f"{where}: '{kind}' markers in a cell without nbgrader {cell_kind} metadata")
    if problems:
        problems = "\n  ".join(problems)
        raise AssignError(f"markers that nbgrader would not strip (the solution would leak):\n  {problems}")


def check_release(root, chapter):
    """Raise AssignError if the release of ``chapter`` shows a solution marker, hidden test or output."""
    folder = Path(root) / "dist" / "release" / chapter
    released = sorted(folder.glob("*.ipynb"))
    if not released:
        raise AssignError(f"no release notebooks in {folder}")
    problems = []
    for nb in released:
        for i, cell in enumerate(_cells(nb)):
            source = "".join(cell.get("source", ""))
            where = f"{nb.name}, cell {i} ({_nbgrader(cell).get('grade_id', 'no grade_id')})"
            problems += [f"{where}: contains '{m}'" for m in MARKERS if m in source]
            if cell.get("outputs") or cell.get("execution_count"):
                problems.append(f"{where}: has outputs")
    if problems:
        raise AssignError(
            "the release would leak solutions or outputs (is the nbgrader metadata of these cells missing?):\n  "
            + "\n  ".join(problems)
        )
    return released


def _load_transform(spec):
    """``module:function`` -> the function (for ``--transform``)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise AssignError(f"--transform {spec!r}: expected MODULE:FUNCTION")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise AssignError(f"--transform {spec!r}: {err}") from None


def _apply_transform(transform, folder):
    """Apply ``transform(notebook_dict, path)`` to each released notebook; it returns the new dict (or None)."""
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        before = [(c.get("id"), c.get("cell_type"), _nbgrader(c)) for c in nb["cells"]]
        new = transform(nb, path)
        nb = nb if new is None else new
        after = [(c.get("id"), c.get("cell_type"), _nbgrader(c)) for c in nb["cells"]]
        if after != before:
            raise AssignError(f"the release transform changed the cells of {path.name} (ids, types or nbgrader "
                              "metadata); it may change their text only")
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def release(chapter=None, root=".", out=None, transform=None):
    """Make the student release of ``chapter`` (all chapters if None) under dist/release/. Returns seconds.

    ``transform(notebook_dict, path)``, if given, is applied to each released notebook (for example to
    turn MyST roles into plain text); it may change the text of cells, not their ids, types or metadata.
    """
    out = out or sys.stdout
    root = Path(root).resolve()
    names = [chapter] if chapter else chapters(root)
    if not names:
        raise AssignError(f"no chapter under {root / 'book'} has a notebook with nbgrader solution cells")
    (root / "dist").mkdir(exist_ok=True)
    times = {}
    for name in names:
        if not (root / "book" / name).is_dir() or name not in chapters(root):
            raise AssignError(f"{name!r} is not a chapter with exercises; chapters: {', '.join(chapters(root))}")
        check_source(root, name)
        run = nbgrader(["generate_assignment", name, "--force", "--no-db"], cwd=root)
        log = run.save(root / "dist" / "logs" / f"release-{name}.log")
        if run.returncode != 0:
            raise AssignError(f"nbgrader generate_assignment {name} failed: {run.error()} (log: {log})")
        if transform is not None:
            _apply_transform(transform, root / "dist" / "release" / name)
        released = check_release(root, name)
        times[name] = run.seconds
        print(f"released {name}: {len(released)} notebook(s) in dist/release/{name}/ ({run.seconds:.1f} s)", file=out)
    return times


# ---------------------------------------------------------------- submissions


def sort_submissions(folder, notebook_names, ungraded=()):
    """Split the files of ``folder`` into {student: {notebook: path}} and [(path, reason)] rejected.

    ``notebook_names`` are the chapter's notebooks with exercises; ``ungraded`` those without any.
    Only regular files count: a symbolic link (which could point at any file of the grader's machine),
    a folder or a device is rejected by name.
    """
    accepted, rejected = {}, []
    expected = ", ".join(f"<student>_{n}.ipynb" for n in notebook_names)
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith("."):
            continue
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            rejected.append((path, "is a symbolic link, not a file: hand in the notebook file itself"))
            continue
        if stat.S_ISDIR(mode):
            rejected.append((path, "is a folder; put the .ipynb files directly in the submissions folder"))
            continue
        if not stat.S_ISREG(mode):
            rejected.append((path, "is not a regular file"))
            continue
        student, sep, rest = path.name.partition("_")
        if path.suffix != ".ipynb" or not sep:
            rejected.append((path, f"is not named {expected}"))
        elif not STUDENT_ID.fullmatch(student):
            rejected.append((path, f"student id {student!r} must be letters, digits, '.' or '-'"))
        elif rest[: -len(".ipynb")] in ungraded:
            rejected.append((path, f"{rest!r} has no exercises: nothing to grade (ignored)"))
        elif rest[: -len(".ipynb")] not in notebook_names:
            rejected.append((path, f"{rest!r} is not a notebook of this chapter (expected {expected})"))
        else:
            accepted.setdefault(student, {})[rest[: -len(".ipynb")]] = path
    return accepted, rejected


def read_file(path, limit=MAX_NOTEBOOK_BYTES):
    """The bytes of a regular file, never following a symbolic link; at most ``limit`` + 1 bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def precheck(path):
    """None if the file can be graded, else why not (too large, not JSON, not a notebook, no code)."""
    from .judge import read_submission

    try:
        data = read_file(path)
    except OSError as err:
        return f"the file could not be read ({err})"
    return read_submission(data)[1]


# ---------------------------------------------------------------- grading


@dataclass
class Row:
    """One line of grades.csv: a student's notebook."""

    student: str
    notebook: str
    scores: dict = field(default_factory=dict)  # grade_id -> points (clamped)
    max_score: float = 0.0
    status: str = "graded"
    notes: list = field(default_factory=list)
    auto: float = 0.0
    adjustment: float = 0.0
    total: float = 0.0


def release_plan(root, chapter, out=None):
    """{notebook: (release notebook dict, {grade_id: points})} of a released chapter (released first if needed).

    Raises AssignError when the release is missing and cannot be made, breaks the grading contract, or
    no longer matches the source notebooks' test cells and points (then: release again).
    """
    from . import plan as planner

    root = Path(root)
    folder = root / "dist" / "release" / chapter
    if not folder.is_dir() or not any(folder.glob("*.ipynb")):
        if chapter not in chapters(root):
            raise AssignError(f"{chapter!r} is not a released chapter with exercises; chapters: "
                              f"{', '.join(chapters(root)) or 'none under book/'}")  # fmt: skip
        print(f"{chapter} has not been released yet: releasing it first", file=out or sys.stdout)
        release(chapter, root, out)
    found = {}
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = planner.release_cells(nb)
        try:
            planner.check_release(cells, f"dist/release/{chapter}/{path.name}")
        except planner.PlanError as err:
            raise AssignError(f"{err} (see 'Changing or adding exercises' in book/instructors.md)") from None
        tests = planner.test_cells(cells)
        source = root / "book" / chapter / path.name
        if source.exists():
            src_tests = planner.test_cells(planner.release_cells(json.loads(source.read_text(encoding="utf-8"))))
            if src_tests != tests:
                raise AssignError(f"the test cells or points of book/{chapter}/{path.name} changed since the release "
                                  f"({src_tests} now, {tests} released): run `make release CHAPTER={chapter}` "
                                  "again (and tell the students)")  # fmt: skip
        found[path.stem] = (nb, tests)
    return found


def _summary(rows, rejected):
    lines = [f"{'student':<16} {'notebook':<24} {'score':>11}  status", "-" * 64]
    for r in rows:
        score = f"{_fmt(r.total)} / {_fmt(r.max_score)}"
        note = f"  ({r.notes[0][:60]}{'...' if len(r.notes[0]) > 60 or len(r.notes) > 1 else ''})" if r.notes else ""
        lines.append(f"{r.student:<16} {r.notebook:<24} {score:>11}  {r.status}{note}")
    for path, reason in rejected:
        lines.append(f"REJECTED {path.name}: {reason}")
    return "\n".join(lines)


def _fmt(x):
    return f"{x:g}"


def _rows(book_rows):
    return [Row(r["student"], r["notebook"], r["scores"], r["max"], r["status"], r["notes"], r["auto"],
                r["adjustment"], r["total"]) for r in book_rows]  # fmt: skip


def report(chapter, root=".", roster=None, out=None):
    """Remake dist/grading/<chapter>/grades.csv from the results, adjustments.csv and the roster; return rows."""
    from .gradebook import Gradebook, read_roster

    out = out or sys.stdout
    plans = release_plan(root, chapter, out)
    book = Gradebook(Path(root).resolve(), chapter)
    book.ensure_adjustments()
    try:
        rows = _rows(book.write_csv({nb: tests for nb, (_, tests) in plans.items() if tests},
                                    read_roster(roster) if roster else ()))  # fmt: skip
    except ValueError as err:
        raise AssignError(str(err)) from None
    return rows


def grade(chapter, submissions, root=".", cell_timeout=None, student_timeout=None, jobs=None, out=None,
          roster=None, unsafe=False, checkers=(), memory=None):
    """Grade every ``<student>_<notebook>.ipynb`` of ``submissions``; returns (rows, rejected).

    ``rows`` are the gradebook's rows of the students graded now and of the roster's. ``checkers`` are
    modules (by name) that register exercises besides ``gradflow.checks``. ``unsafe`` grades without a
    sandbox (only for submissions you trust). ``jobs`` students are graded at a time (default: cores), each
    in one sandbox for all their notebooks.
    """
    from gradflow.checks.exercise import load_registry

    from . import feedback, judge, sandbox
    from .gradebook import Gradebook, read_roster, secret

    out = out or sys.stdout
    root = Path(root).resolve()
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise AssignError(f"submissions folder {submissions} does not exist")
    roster_ids = read_roster(roster) if roster else []
    ok, why = sandbox.available()
    if not ok and not unsafe:
        raise AssignError(f"no sandbox to run the students' code in: {why}. Grading without one would let a "
                          "notebook read your solutions and change grades. Install bubblewrap, or grade on a "
                          "Linux machine (see book/instructors.md); only for notebooks you trust, pass "
                          "--unsafe-no-sandbox (make grade ... UNSAFE_NO_SANDBOX=1)")  # fmt: skip
    plans = release_plan(root, chapter, out)
    graded_notebooks = {nb: tests for nb, (_, tests) in plans.items() if tests}
    ungraded = [nb for nb, (_, tests) in plans.items() if not tests]
    registry = load_registry(("gradflow.checks", *checkers))
    unknown = [g for tests in graded_notebooks.values() for g in tests if g not in registry]
    if unknown:
        print(f"warning: the course's checkers do not know the test cells {', '.join(unknown)}: they cannot be "
              "graded (status 'error'); their chapter's checkers must register them", file=sys.stderr)
    accepted, rejected = sort_submissions(submissions, list(graded_notebooks), ungraded)
    for path, reason in rejected:
        print(f"rejected {path}: {reason}", file=sys.stderr)
    book = Gradebook(root, chapter)
    book.ensure_adjustments()
    key = secret(root)
    limits = sandbox.Limits(cell_timeout=float(cell_timeout or CELL_TIMEOUT),
                            total_timeout=float(student_timeout or STUDENT_TIMEOUT),
                            **({"memory": int(memory)} if memory else {}))  # fmt: skip
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    slots = sandbox.Slots(jobs)
    log_lines, lock = [], threading.Lock()
    extra = [m for m in checkers if m.split(".")[0] != "gradflow"]
    started = time.monotonic()

    def one(student):
        t0 = time.monotonic()
        handed = {}
        for nb, path in sorted(accepted[student].items()):
            try:
                handed[nb] = (plans[nb][0], read_file(path))
            except OSError as err:
                handed[nb] = (plans[nb][0], b"")
                print(f"could not read {path}: {err}", file=sys.stderr)
        with slots.borrow() as uid:
            try:
                results = judge.grade_student(handed, chapter=chapter, student=student, secret=key, registry=registry,
                                              runtime=runtime.path, limits=limits, uid=uid, unsafe=unsafe)
            except Exception as err:  # noqa: BLE001 - a bug of the grader: this student is an error, not the run
                results = {nb: {"student": student, "chapter": chapter, "notebook": nb, "status": "error",
                                "total": 0.0, "max": sum(plans[nb][1].values()), "cells": {}, "graded_at": "",
                                "notes": ["your notebook could not be graded; your instructor has been told"],
                                "staff_notes": [f"the grader failed: {type(err).__name__}: {str(err)[:200]}"]}
                           for nb in handed}  # fmt: skip
        for nb, result in results.items():
            if unsafe:
                result["staff_notes"] = ["graded WITHOUT a sandbox (--unsafe-no-sandbox)"] + result["staff_notes"]
            book.save(result)
            data = handed[nb][1]
            submission, _ = judge.read_submission(data) if data else (None, None)
            feedback.write(book.folder / "feedback" / student / f"{nb}.html", result, submission, plans[nb][0])
        scores = ", ".join(f"{nb} {_fmt(r['total'])} / {_fmt(r['max'])} {r['status']}" for nb, r in results.items())
        line = f"graded {student}: {scores} ({time.monotonic() - t0:.1f} s)"
        with lock:
            log_lines.append(line)
            print(line, file=out, flush=True)
        return results

    with sandbox.Runtime(extra) as runtime, ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, sorted(accepted)))
    seconds = time.monotonic() - started
    (book.folder / "logs").mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (book.folder / "logs" / f"grade-{stamp}.log").write_text(
        "\n".join(log_lines + [f"REJECTED {p}: {r}" for p, r in rejected]) + "\n", encoding="utf-8")
    try:
        all_rows = _rows(book.write_csv(graded_notebooks, roster_ids))
    except ValueError as err:
        raise AssignError(str(err)) from None
    now = set(accepted) | set(roster_ids)
    rows = [r for r in all_rows if r.student in now]
    print(_summary(rows, rejected), file=out)
    rel = book.folder.relative_to(root)
    count = sum(len(v) for v in accepted.values())
    print(f"\ngraded {count} notebook(s) of {len(accepted)} student(s) in {seconds:.1f} s with {jobs} job(s); "
          f"wrote {rel}/grades.csv and {rel}/feedback/<student>/", file=out)  # fmt: skip
    return rows, rejected


# ---------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m coursetools.assign", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the course folder (holds nbgrader_config.py); default: .")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="make the student release of one chapter (default: all)")
    p.add_argument("chapter", nargs="?", default=None)
    p.add_argument("--transform", default=None, help="MODULE:FUNCTION applied to each released notebook")
    p = sub.add_parser("grade", help="grade a folder of <student>_<notebook>.ipynb files")
    p.add_argument("chapter")
    p.add_argument("submissions")
    p.add_argument("--jobs", type=int, default=None, help="students graded at the same time (default: cores)")
    p.add_argument("--roster", default=None, help="a file of student ids: those who handed nothing in get 0")
    p.add_argument("--cell-timeout", type=int, default=None, help=f"seconds per cell (default {CELL_TIMEOUT})")
    p.add_argument("--student-timeout", type=int, default=None,
                   help=f"seconds per notebook of a student, reruns included (default {STUDENT_TIMEOUT})")
    p.add_argument("--memory-gb", type=float, default=None, help="memory of one sandbox (default 2)")
    p.add_argument("--checkers", nargs="*", default=(), help="modules that register exercises (besides gradflow)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="grade without a sandbox where bubblewrap cannot run: only for notebooks you trust")
    p = sub.add_parser("report", help="remake grades.csv from the results and adjustments.csv, grading nothing")
    p.add_argument("chapter")
    p.add_argument("--roster", default=None)
    sub.add_parser("stats", help="points, exercises and estimated time per chapter")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "nbgrader_config.py").exists():
        parser.error(f"no nbgrader_config.py in {Path(args.root).resolve()}: run from the course folder")
    try:
        if args.command == "stats":
            print(StatsTable(args.root))
        elif args.command == "release":
            release(args.chapter or None, args.root, transform=_load_transform(args.transform) if args.transform
                    else None)  # fmt: skip
        elif args.command == "report":
            rows = report(args.chapter, args.root, args.roster)
            print(_summary(rows, []))
        else:
            grade(args.chapter, args.submissions, args.root, args.cell_timeout, args.student_timeout, args.jobs,
                  roster=args.roster, unsafe=args.unsafe_no_sandbox, checkers=tuple(args.checkers),
                  memory=args.memory_gb * 1e9 if args.memory_gb else None)  # fmt: skip
    except AssignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

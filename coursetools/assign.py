"""Release and grade the chapters' exercises with nbgrader: the glue behind `make release` and `make grade`.

    python -m coursetools.assign release [CHAPTER]
    python -m coursetools.assign grade CHAPTER SUBMISSIONS_DIR
    python -m coursetools.assign stats      (points and estimated time per chapter)

nbgrader (configured by ``nbgrader_config.py``) does the work: ``generate_assignment`` strips the
solutions and hidden tests, ``autograde`` runs the submissions, ``generate_feedback`` writes the HTML.
This module only finds the chapters, checks that a release leaks nothing, sorts the handed-in files by
student, runs nbgrader once per student in a throw-away copy of the course, and writes the scores.
"""

import argparse
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["chapters", "release", "check_source", "check_release", "sort_submissions", "precheck", "grade", "stats",
           "StatsTable", "main"]

# A submission is named <student>_<notebook>.ipynb. The student id has no underscore, so the first
# underscore separates it from the notebook's name (which may contain underscores).
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STUDENT_TIMEOUT = 900  # seconds of wall clock for one student's autograde (all their notebooks)
_DB_LOCK = threading.Lock()  # students graded in parallel write to dist/gradebook.db one at a time
MAX_NOTEBOOK_BYTES = 50_000_000  # a handed-in file larger than this is not graded
MAX_OUTPUT_CHARS = 20_000  # a longer printout in the autograded notebook is cut (nbgrader cuts lines only)


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
        pad = "padding: 0.2em 0.8em"
        align = lambda i: f"{pad}; text-align: {'right' if i else 'left'}"  # noqa: E731
        head = "".join(f'<th style="{align(i)}">{html.escape(h)}</th>' for i, h in enumerate(self.header))
        body = "".join(
            "<tr>" + "".join(f'<td style="{align(i)}">{html.escape(str(v))}</td>' for i, v in enumerate(r)) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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


KERNEL_START_FAILED = re.compile(r"Kernel didn't respond in \d+ seconds|Kernel died before replying to kernel_info")


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


def release(chapter=None, root=".", out=None):
    """Make the student release of ``chapter`` (all chapters if None) under dist/release/. Returns seconds."""
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
        run = nbgrader(["generate_assignment", name, "--force"], cwd=root)
        log = run.save(root / "dist" / "logs" / f"release-{name}.log")
        if run.returncode != 0:
            raise AssignError(f"nbgrader generate_assignment {name} failed: {run.error()} (log: {log})")
        released = check_release(root, name)
        times[name] = run.seconds
        print(f"released {name}: {len(released)} notebook(s) in dist/release/{name}/ ({run.seconds:.1f} s)", file=out)
    return times


# ---------------------------------------------------------------- submissions


def sort_submissions(folder, notebook_names, ungraded=()):
    """Split the files of ``folder`` into {student: {notebook: path}} and [(path, reason)] rejected.

    ``notebook_names`` are the chapter's notebooks with exercises; ``ungraded`` those without any.
    """
    accepted, rejected = {}, []
    expected = ", ".join(f"<student>_{n}.ipynb" for n in notebook_names)
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_file():
            rejected.append((path, "is a folder; put the .ipynb files directly in the submissions folder"))
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


def precheck(path):
    """None if nbgrader can take the file, else why not (not JSON, not a notebook, no exercise cells)."""
    import nbformat

    size = Path(path).stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return f"the file is too large to be a notebook of this course ({size / 1e6:.0f} MB)"
    try:
        raw = json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        return f"the file is not a notebook (not valid JSON: {err})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return "the file is JSON but not a notebook (it has no list of cells)"
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several kinds of errors for malformed notebooks
        return f"the notebook is malformed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    if not any(_nbgrader(c).get("grade_id") for c in nb.cells):
        return "the notebook has none of the exercise cells (was the wrong file handed in?)"
    return None


# ---------------------------------------------------------------- grading


@dataclass
class Row:
    """One line of grades.csv: a student's notebook."""

    student: str
    notebook: str
    scores: dict = field(default_factory=dict)  # grade_id -> points
    max_score: float = 0.0
    status: str = "graded"
    notes: list = field(default_factory=list)

    @property
    def total(self):
        return sum(self.scores.values())


def _grade_cells(db_url, chapter):
    """{notebook: {grade_id: max points}} for the chapter, from the gradebook, in notebook order."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        assignment = gb.find_assignment(chapter)
        return {
            nb.name: {cell.name: float(cell.max_score) for cell in sorted(nb.grade_cells, key=_cell_order(nb))}
            for nb in assignment.notebooks
        }


def _known_ids(db_url, chapter):
    """{notebook: the grade_ids of all its nbgrader cells} (solution, test and task cells)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {nb.name: {c.name for c in nb.source_cells} for nb in gb.find_assignment(chapter).notebooks}


def _without_unknown_ids(path, dest, known):
    """Copy a submission, turning cells with a grade_id the gradebook does not know into ordinary cells.

    nbgrader 0.9.6 drops such a grade_id but keeps the cell's other nbgrader metadata, then fails with
    KeyError('grade_id'); as ordinary cells they run as the student's code and earn nothing.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    unknown = []
    for cell in nb["cells"]:
        grade_id = _nbgrader(cell).get("grade_id")
        if "nbgrader" in cell.get("metadata", {}) and grade_id not in known:
            unknown.append(str(grade_id))
            del cell["metadata"]["nbgrader"]
    Path(dest).write_text(json.dumps(nb), encoding="utf-8")
    return unknown


def _cell_order(nb):
    order = {c.name: i for i, c in enumerate(nb.source_cells)}
    return lambda cell: order.get(cell.name, 0)


def _cap_outputs(path):
    """Cut very long text outputs in an autograded notebook (nbgrader's LimitOutput counts lines only)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("text")
            if text is not None and len("".join(text)) > MAX_OUTPUT_CHARS:
                output["text"] = "".join(text)[:MAX_OUTPUT_CHARS] + "\n... output truncated by the grader ...\n"
                changed = True
    if changed:
        path.chmod(0o644)
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return changed


def _notes_from_autograded(path, cells):
    """What went wrong, in words, from the executed notebook: failing tests, timeouts, long output."""
    notes = []
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["the autograded notebook could not be read"]
    for cell in nb.get("cells", []):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        grade_id = _nbgrader(cell).get("grade_id")
        for err in errors:
            if err.get("ename") == "CellTimeoutError":
                notes.append("a cell ran longer than the time limit per cell and was stopped")
            elif grade_id in cells:
                message = " ".join(str(err.get("evalue", "")).split())[:200]
                notes.append(f"{grade_id}: {err.get('ename')}{': ' + message if message else ''}")
    return list(dict.fromkeys(notes))


def _write_invalid_feedback(folder, notebook, reason):
    folder.mkdir(parents=True, exist_ok=True)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(notebook)}</title></head>"
        f"<body><h1>{html.escape(notebook)}: score 0</h1><p>Your file could not be graded: "
        f"{html.escape(reason)}.</p><p>Hand in the notebook file (.ipynb) you worked in, saved from "
        f"Jupyter, with its exercise cells.</p></body></html>"
    )
    (folder / f"{notebook}.html").write_text(page, encoding="utf-8")


def _sandbox(root, chapter, student, files, known, tmp):
    """A throw-away course: config, gradebook, release and the student's files, but no source notebooks."""
    shutil.copy2(root / "nbgrader_config.py", tmp / "nbgrader_config.py")
    (tmp / "dist").mkdir()
    shutil.copy2(root / "dist" / "gradebook.db", tmp / "dist" / "gradebook.db")
    shutil.copytree(root / "dist" / "release" / chapter, tmp / "dist" / "release" / chapter)
    # nbgrader copies the source folder's other files next to the notebooks; the release has the same ones
    release = root / "dist" / "release" / chapter
    shutil.copytree(release, tmp / "book" / chapter, ignore=shutil.ignore_patterns("*.ipynb"))
    submitted = tmp / "dist" / "submitted" / student / chapter
    submitted.mkdir(parents=True)
    return {name: _without_unknown_ids(path, submitted / f"{name}.ipynb", known[name]) for name, path in files.items()}


def _files(folder):
    """The files under ``folder``, as relative POSIX paths."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _copy_back(src, dest):
    if dest.exists():
        shutil.rmtree(dest)
    if src.exists():
        shutil.copytree(src, dest)
        for p in [dest, *dest.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def grade_student(root, chapter, student, files, cells, known, cell_timeout=None, student_timeout=STUDENT_TIMEOUT):
    """Autograde one student's notebooks in a sandbox; return one Row per notebook of the chapter."""
    from nbgrader.api import Gradebook

    rows = {nb: Row(student, nb, max_score=sum(c.values())) for nb, c in cells.items()}
    submitted = root / "dist" / "submitted" / student / chapter
    if submitted.exists():
        shutil.rmtree(submitted)
    submitted.mkdir(parents=True)
    good = {}
    for nb, row in rows.items():
        if nb not in files:
            row.status, row.notes = "missing", ["no file handed in for this notebook"]
            continue
        shutil.copyfile(files[nb], submitted / f"{nb}.ipynb")  # a copy: the submissions folder is read only
        reason = precheck(files[nb])
        if reason:
            row.status, row.notes = "invalid", [f"{files[nb].name}: {reason}"]
        else:
            good[nb] = files[nb]
            found = {_nbgrader(c).get("grade_id") for c in _cells(files[nb])}
            lost = [g for g in cells[nb] if g not in found]
            if lost:
                row.notes.append("test cells deleted or renamed, put back by the grader: " + ", ".join(lost))

    feedback = root / "dist" / "feedback" / student / chapter
    autograded = root / "dist" / "autograded" / student / chapter
    for dest in (feedback, autograded):
        if dest.exists():
            shutil.rmtree(dest)
    if good:
        extra = [f"--Execute.timeout={cell_timeout}"] if cell_timeout else []
        with tempfile.TemporaryDirectory(prefix="gradflow-grade-") as tmp:
            tmp = Path(tmp)
            for nb, unknown in _sandbox(root, chapter, student, good, known, tmp).items():
                if unknown:
                    rows[nb].notes.append("cells with unknown grade ids run as ordinary cells: " + ", ".join(unknown))
            before = _files(tmp)
            run = nbgrader(["autograde", chapter, f"--student={student}", "--force", *extra], tmp, student_timeout)
            if run.returncode != 0 and not run.timed_out and KERNEL_START_FAILED.search(run.log):
                # the kernel never started (a loaded machine): nothing of the student's ran; try once more
                run = nbgrader(["autograde", chapter, f"--student={student}", "--force", *extra], tmp, student_timeout)
            run.save(root / "dist" / "logs" / f"autograde-{chapter}-{student}.log")
            for nb in good:
                path = tmp / "dist" / "autograded" / student / chapter / f"{nb}.ipynb"
                if path.exists() and _cap_outputs(path):
                    rows[nb].notes.append(f"printed more than {MAX_OUTPUT_CHARS} characters in a cell (cut)")
            strays = sorted(p for p in _files(tmp) - before if not p.startswith(("dist/autograded/", "dist/feedback/")))
            if strays:
                for nb in good:
                    shown = ", ".join(strays[:5]) + (" ..." if len(strays) > 5 else "")
                    rows[nb].notes.append(f"wrote files outside its folder (discarded): {shown}")
            if run.returncode == 0 and not run.timed_out:
                _copy_back(tmp / "dist" / "autograded" / student / chapter, autograded)
            for nb in good:
                row = rows[nb]
                if run.timed_out:
                    row.status = "timeout"
                    row.notes.append(f"grading stopped after the {student_timeout} s limit per student; scored 0")
                    continue
                if run.returncode != 0:
                    row.status = "error"
                    row.notes.append("nbgrader could not grade it: " + run.error())
                    continue
                try:
                    with warnings.catch_warnings(), Gradebook(f"sqlite:///{tmp / 'dist' / 'gradebook.db'}") as gb:
                        warnings.simplefilter("ignore")
                        for g in gb.find_submission_notebook(nb, chapter, student).grades:
                            row.scores[g.name] = float(g.score or 0.0)
                except Exception as err:  # a submission may have damaged its copy of the gradebook
                    row.status = "error"
                    row.notes.append(f"the grades could not be read ({type(err).__name__}); scored 0")
                    row.scores = {}
                    continue
                row.notes += _notes_from_autograded(autograded / f"{nb}.ipynb", cells[nb])
    for nb, row in rows.items():
        row.scores = {g: row.scores.get(g, 0.0) for g in cells[nb]}
    _save_to_gradebook(root, chapter, student, rows)
    return list(rows.values())


def _save_to_gradebook(root, chapter, student, rows):
    """Record the scores in dist/gradebook.db (what nbgrader's formgrader and `nbgrader export` read)."""
    from nbgrader.api import Gradebook

    with _DB_LOCK, warnings.catch_warnings(), Gradebook(f"sqlite:///{root / 'dist' / 'gradebook.db'}") as gb:
        warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy "not in session" warnings
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(chapter, student)
        for nb in submission.notebooks:
            for g in nb.grades:
                g.auto_score = rows[nb.name].scores.get(g.name, 0.0) if nb.name in rows else 0.0
                g.needs_manual_grade = False
        gb.db.commit()


def write_csv(path, chapter, rows, cells):
    columns = [g for nb in cells.values() for g in nb]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "chapter", "notebook", *columns, "total", "max", "status", "notes"])
        for r in rows:
            points = [_fmt(r.scores[g]) if g in r.scores else "" for g in columns]
            w.writerow([r.student, chapter, r.notebook, *points, _fmt(r.total), _fmt(r.max_score), r.status,
                        "; ".join(r.notes)])


def _fmt(x):
    return f"{x:g}"


def summary(rows, rejected):
    """A short text table of the grades, then the rejected files."""
    lines = [f"{'student':<16} {'notebook':<24} {'score':>11}  status", "-" * 64]
    for r in rows:
        score = f"{_fmt(r.total)} / {_fmt(r.max_score)}"
        note = f"  ({r.notes[0][:60]}{'...' if len(r.notes[0]) > 60 or len(r.notes) > 1 else ''})" if r.notes else ""
        lines.append(f"{r.student:<16} {r.notebook:<24} {score:>11}  {r.status}{note}")
    for path, reason in rejected:
        lines.append(f"REJECTED {path.name}: {reason}")
    return "\n".join(lines)


def grade(chapter, submissions, root=".", cell_timeout=None, student_timeout=STUDENT_TIMEOUT, jobs=1, out=None):
    """Grade every ``<student>_<notebook>.ipynb`` of ``submissions``; returns (rows, rejected)."""
    out = out or sys.stdout
    root = Path(root).resolve()
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise AssignError(f"submissions folder {submissions} does not exist")
    db = root / "dist" / "gradebook.db"
    try:  # grade against the release the students got, as recorded in the gradebook
        cells = _grade_cells(f"sqlite:///{db}", chapter) if db.exists() else None
    except Exception:  # nbgrader's MissingEntry: this chapter was never released
        cells = None
    if cells is None or not (root / "dist" / "release" / chapter).is_dir():
        # a grading copy of the course may hold only nbgrader_config.py and dist/ (no book/): see instructors.md
        if chapter not in chapters(root):
            raise AssignError(f"{chapter!r} is not a released chapter with exercises; chapters: "
                              f"{', '.join(chapters(root)) or 'none under book/'}")  # fmt: skip
        print(f"{chapter} has not been released yet: releasing it first", file=out)
        release(chapter, root, out)
        cells = _grade_cells(f"sqlite:///{db}", chapter)
    known = _known_ids(f"sqlite:///{db}", chapter)
    ungraded = [nb for nb, c in cells.items() if not c]  # a notebook of the chapter without exercises
    cells = {nb: c for nb, c in cells.items() if c}
    accepted, rejected = sort_submissions(submissions, list(cells), ungraded)
    for path, reason in rejected:
        print(f"rejected {path}: {reason}", file=sys.stderr)

    def one(student):
        start = time.monotonic()
        result = grade_student(root, chapter, student, accepted[student], cells, known, cell_timeout, student_timeout)
        print(f"graded {student} ({time.monotonic() - start:.1f} s)", file=out, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each student is its own nbgrader process
        rows = [row for result in pool.map(one, sorted(accepted)) for row in result]
    if accepted:
        # the HTML feedback of every autograded student, in one nbgrader run (it does not run student code)
        fb = nbgrader(["generate_feedback", chapter, "--force"], root, STUDENT_TIMEOUT)
        fb.save(root / "dist" / "logs" / f"feedback-{chapter}.log")
        if fb.returncode != 0:
            print(f"warning: nbgrader generate_feedback reported an error: {fb.error()}", file=sys.stderr)
        for r in rows:
            page = root / "dist" / "feedback" / r.student / chapter / f"{r.notebook}.html"
            if r.status in ("invalid", "error", "timeout"):
                _write_invalid_feedback(page.parent, r.notebook, "; ".join(r.notes))
            elif r.status == "graded" and not page.exists():
                r.notes.append("no feedback page was made")
    write_csv(root / "dist" / "grades.csv", chapter, rows, cells)
    write_csv(root / "dist" / "grades" / f"{chapter}.csv", chapter, rows, cells)
    print(summary(rows, rejected), file=out)
    print(f"\nwrote dist/grades.csv and dist/feedback/<student>/{chapter}/ ({len(accepted)} student(s))", file=out)
    return rows, rejected


# ---------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m coursetools.assign", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the course folder (holds nbgrader_config.py); default: .")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="make the student release of one chapter (default: all)")
    p.add_argument("chapter", nargs="?", default=None)
    p = sub.add_parser("grade", help="grade a folder of <student>_<notebook>.ipynb files")
    p.add_argument("chapter")
    p.add_argument("submissions")
    p.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: nbgrader_config.py)")
    p.add_argument("--student-timeout", type=int, default=STUDENT_TIMEOUT, help="seconds per student (wall clock)")
    p.add_argument("--jobs", type=int, default=1, help="students graded at the same time (default 1)")
    sub.add_parser("stats", help="points, exercises and estimated time per chapter")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "nbgrader_config.py").exists():
        parser.error(f"no nbgrader_config.py in {Path(args.root).resolve()}: run from the course folder")
    try:
        if args.command == "stats":
            print(StatsTable(args.root))
        elif args.command == "release":
            release(args.chapter or None, args.root)
        else:
            grade(args.chapter, args.submissions, args.root, args.cell_timeout, args.student_timeout, args.jobs)
    except AssignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

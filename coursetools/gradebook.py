"""The instructor's grading state, under ``dist/grading/`` (``make clean`` keeps it).

::

    dist/grading/secret                         the grading secret (made once, mode 0600; back it up)
    dist/grading/<chapter>/results/<student>/<notebook>.json   one verdict per graded notebook
    dist/grading/<chapter>/adjustments.csv      your manual adjustments (student, notebook, points, reason)
    dist/grading/<chapter>/grades.csv           the gradebook: made from the two above (and the roster)
    dist/grading/<chapter>/feedback/<student>/<notebook>.html   what to send back to each student
    dist/grading/<chapter>/logs/                what the last runs printed

Only the grader writes here, never a sandbox (which cannot see ``dist/``). A run writes the results of
the students it graded and leaves everyone else's; ``grades.csv`` is remade from all results each time.
"""

import csv
import io
import json
import os
import re
import secrets
import tempfile
from pathlib import Path

__all__ = ["Gradebook", "secret", "read_roster", "STUDENT_ID"]

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
ADJUSTMENTS_HEADER = ["student", "notebook", "points", "reason"]


def _atomic_write(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def secret(root):
    """The grading secret: $GRADING_SECRET, else dist/grading/secret (made on first use)."""
    if os.environ.get("GRADING_SECRET"):
        return os.environ["GRADING_SECRET"]
    path = Path(root) / "dist" / "grading" / "secret"
    if not path.exists():
        _atomic_write(path, secrets.token_hex(32) + "\n", mode=0o600)
    return path.read_text(encoding="utf-8").strip()


def read_roster(path):
    """Student ids from a text or CSV file (first column; '#' comments, blank lines and a header skipped)."""
    ids = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        first = line.split("#", 1)[0].split(",")[0].strip()
        if first and STUDENT_ID.fullmatch(first):
            ids.append(first)
    return list(dict.fromkeys(ids))


def _cell(value):
    """A CSV field a spreadsheet will not run as a formula (a student's text can start with '=')."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _fmt(x):
    return f"{x:g}"


class Gradebook:
    """The grading state of one chapter."""

    def __init__(self, root, chapter):
        self.root = Path(root)
        self.chapter = chapter
        self.folder = self.root / "dist" / "grading" / chapter

    # ---- results
    def result_path(self, student, notebook):
        return self.folder / "results" / student / f"{notebook}.json"

    def save(self, result):
        _atomic_write(self.result_path(result["student"], result["notebook"]),
                      json.dumps(result, indent=1, ensure_ascii=False) + "\n")  # fmt: skip

    def results(self):
        """{(student, notebook): result} of every notebook ever graded for this chapter."""
        found = {}
        for path in sorted((self.folder / "results").glob("*/*.json")):
            try:
                r = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found[(path.parent.name, path.stem)] = r
        return found

    # ---- adjustments
    @property
    def adjustments_path(self):
        return self.folder / "adjustments.csv"

    def ensure_adjustments(self):
        if not self.adjustments_path.exists():
            _atomic_write(self.adjustments_path, ",".join(ADJUSTMENTS_HEADER) + "\n")

    def adjustments(self):
        """{(student, notebook): (points, [reasons])} from adjustments.csv; problems are raised, not ignored."""
        if not self.adjustments_path.exists():
            return {}
        found, problems = {}, []
        rows = csv.DictReader(io.StringIO(self.adjustments_path.read_text(encoding="utf-8")))
        for n, row in enumerate(rows, start=2):
            student, notebook = (row.get("student") or "").strip(), (row.get("notebook") or "").strip()
            if not student or student.startswith("#"):
                continue
            try:
                points = float(row.get("points") or "")
            except ValueError:
                problems.append(f"line {n}: points {row.get('points')!r} is not a number")
                continue
            old = found.get((student, notebook), (0.0, []))
            found[(student, notebook)] = (old[0] + points, old[1] + [(row.get("reason") or "").strip()])
        if problems:
            raise ValueError(f"{self.adjustments_path}: " + "; ".join(problems))
        return found

    # ---- the table
    def rows(self, notebooks, roster=()):
        """One row per (student, notebook): the results, the adjustments and the roster merged.

        ``notebooks`` is {notebook: {grade_id: points}} of the chapter's release.
        """
        results, adjustments = self.results(), self.adjustments()
        students = sorted({s for s, _ in results} | set(roster) | {s for s, _ in adjustments})
        rows = []
        for student in students:
            handed_in = any((student, nb) in results for nb in notebooks)
            for nb, cells in notebooks.items():
                r = results.get((student, nb))
                adj, reasons = adjustments.get((student, nb), (0.0, []))
                row = {"student": student, "notebook": nb, "max": sum(cells.values()), "adjustment": adj,
                       "scores": {}, "auto": 0.0, "graded_at": "", "notes": []}  # fmt: skip
                if r is None:
                    row["status"] = "missing"
                    row["notes"] = ["nothing handed in" if not handed_in else "no file handed in for this notebook"]
                else:
                    row["status"], row["graded_at"] = r.get("status", "error"), r.get("graded_at", "")
                    row["notes"] = [f"grader: {n}" for n in r.get("staff_notes", [])] + list(r.get("notes", []))
                    for gid, points in cells.items():
                        got = r.get("cells", {}).get(gid, {}).get("score", 0.0)
                        row["scores"][gid] = min(points, max(0.0, float(got)))  # clamped, whatever the file says
                    row["auto"] = sum(row["scores"].values())
                    if set(r.get("cells", {})) != set(cells):
                        row["notes"] = ["graded against an older release of this notebook: regrade it"] + row["notes"]
                if reasons:
                    row["notes"] = row["notes"] + [f"adjusted by {_fmt(adj)}: " + "; ".join(x for x in reasons if x)]
                row["total"] = max(0.0, row["auto"] + adj)
                rows.append(row)
        return rows

    def write_csv(self, notebooks, roster=()):
        rows = self.rows(notebooks, roster)
        columns = [g for cells in notebooks.values() for g in cells]
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["student", "chapter", "notebook", *columns, "auto", "adjustment", "total", "max", "status",
                    "graded_at", "notes"])  # fmt: skip
        for r in rows:
            scores = [_fmt(r["scores"][g]) if g in r["scores"] else "" for g in columns]
            w.writerow([_cell(v) for v in (r["student"], self.chapter, r["notebook"], *scores, _fmt(r["auto"]),
                                           _fmt(r["adjustment"]), _fmt(r["total"]), _fmt(r["max"]), r["status"],
                                           r["graded_at"], "; ".join(r["notes"]))])  # fmt: skip
        _atomic_write(self.folder / "grades.csv", out.getvalue())
        return rows

"""The feedback page of one graded notebook: scores, the checkers' messages, and the student's own cells.

A page holds only what belongs to its student: the verdict of their notebook (scores and the
checkers' messages about their answers) and the text of their own exercise cells, capped. No
solution, no hidden test, no output of the grading run and no file the notebook wrote, nothing of
another student, and no instructor-only note (problems of the course or of the grading machine).
"""

import html
from pathlib import Path

from . import plan as planner

__all__ = ["page", "write", "MAX_CELL_CHARS", "MAX_PAGE_CHARS"]

MAX_CELL_CHARS = 20_000
MAX_PAGE_CHARS = 400_000

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45;
       color: #1a1a1a; background: #fff; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td:first-child { width: 28%; } td:last-child { width: 52%; }
td.n { text-align: right; white-space: nowrap; } small { color: #555; }
.md { white-space: pre-wrap; border-left: 3px solid #ccc; padding: 0.2rem 0.6rem; margin: 0.2rem 0 1rem; }
pre { margin: 0.2rem 0 1rem; }
.ok { color: #0b6e4f; } .no { color: #a4161a; }
pre { background: #f4f4f4; padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
@media (prefers-color-scheme: dark) { body { background: #111; color: #eee; } pre { background: #222; }
  .ok { color: #6fd3a8; } .no { color: #ff8a8a; } th, td { border-color: #444; } small { color: #aaa; } }
"""


def _fmt(x):
    return f"{x:g}"


def _cells(submission, release=None):
    """The student's exercise cells (test cells excluded, as the grader matched them), capped."""
    cells = submission.get("cells", []) if isinstance(submission, dict) else []
    cells = [c if isinstance(c, dict) else {} for c in cells]
    if release is not None:
        try:
            chosen = planner.make_plan(release, submission).own
        except planner.PlanError:
            chosen = range(len(cells))
    else:
        start = next((i for i, c in enumerate(cells) if planner._is_heading(c)), 0)
        chosen = [i for i in range(start, len(cells)) if not planner._nbgrader(cells[i]).get("grade")
                  or planner._nbgrader(cells[i]).get("solution")]  # fmt: skip
    shown, used = [], 0
    for i in chosen:
        c = cells[i]
        text = planner.source_of(c)
        if len(text) > MAX_CELL_CHARS:
            text = text[:MAX_CELL_CHARS] + "\n… (cut)"
        if used + len(text) > MAX_PAGE_CHARS:
            shown.append(("note", "… the rest of the notebook is not shown (too long)", None))
            break
        used += len(text)
        shown.append((c.get("cell_type", "code"), text, i + 1))
    return shown


def page(result, submission=None, release=None):
    """The HTML feedback page for a verdict (``result``), the submitted notebook and its release (dicts)."""
    e = html.escape
    title = f"{result['chapter']} / {result['notebook']}"
    total, maximum = result.get("total", 0.0), result.get("max", 0.0)
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{e(title)}: {_fmt(total)} / {_fmt(maximum)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p><strong>Score: {_fmt(total)} / {_fmt(maximum)}</strong> (student {e(result['student'])}, "
             f"graded {e(result.get('graded_at', ''))})</p>"]  # fmt: skip
    if result.get("status") == "invalid":
        parts.append(f"<p>Your file could not be graded: {e('; '.join(result['notes']))}. Hand in the notebook "
                     "file (.ipynb) you worked in, saved from Jupyter, with its exercise cells.</p>")
    else:
        parts.append("<table><thead><tr><th>exercise</th><th>points</th><th>what the checker found</th></tr></thead>"
                     "<tbody>")
        for gid, cell in result.get("cells", {}).items():
            items = cell.get("exercises") or [{"name": "", "points": cell["points"], "score": cell["score"],
                                               "message": "not graded"}]  # fmt: skip
            for it in items:
                ok = it["message"] is None
                verdict = "<span class='ok'>right</span>" if ok else f"<span class='no'>{e(it['message'])}</span>"
                parts.append(f"<tr><td>{e(it['name'])}<br><small>{e(gid)}</small></td>"
                             f"<td class='n'>{_fmt(it['score'])} / {_fmt(it['points'])}</td><td>{verdict}</td></tr>")
        parts.append("</tbody></table>")
        if result.get("notes"):
            parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result["notes"]) + "</ul>")
    if submission is not None:
        parts.append("<h2>Your exercise cells, as handed in</h2>")
        for kind, text, number in _cells(submission, release):
            if kind == "note":
                parts.append(f"<p><em>{e(text)}</em></p>")
                continue
            parts.append(f"<small>cell {number}</small>")  # the notes' "cell 8" counts cells from the top, from 1
            parts.append(f"<div class='md'>{e(text)}</div>" if kind == "markdown" else f"<pre>{e(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(path, result, submission=None, release=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(result, submission, release), encoding="utf-8")
    return path

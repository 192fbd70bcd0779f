"""Grade one handed-in notebook: a pure job, notebook in, verdict (JSON) out.

The grader process (this module) never runs a student's code. For one notebook it

1. builds the :class:`~coursetools.plan.Plan` from the trusted release and the submission;
2. draws each exercise's cases from the instructor's secret (per student, notebook, test cell and
   exercise, so hidden inputs differ between students and are reproducible on a regrade);
3. runs the plan in a sandbox (:mod:`coursetools.sandbox`), which hands back plain-data answers;
   a step that hangs past its limit, crashes the runner or exhausts memory is skipped on a rerun,
   so it costs only its own exercise;
4. calls each exercise's ``verdict`` on the answers and gives each exercise its share of its test
   cell's points (the release's points, which ``make release`` copied from the source notebook),
   clamped to them.

Command line (for a batch system: each job needs the release notebook, the submission, the secret
and the course's Python environment)::

    GRADING_SECRET=... python -m coursetools.judge RELEASE.ipynb SUBMISSION.ipynb --student ID --chapter CH \
        --out verdict.json

The verdict is what ``make grade`` saves as ``dist/grading/<chapter>/results/<student>/<notebook>.json``.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import plan as planner
from . import sandbox

__all__ = ["MAX_NOTEBOOK_BYTES", "case_seed", "read_submission", "grade_notebook", "main"]

MAX_NOTEBOOK_BYTES = 50_000_000
MAX_RERUNS = 6
SCHEMA = 1
KILLED = {
    "step": "ran past its time limit and could not be interrupted",
    "memory": "used more memory than the limit",
    "processes": "started more processes than the limit",
    "total": "was still running when the notebook's total time ran out",
    "startup": "did not start",
}


def case_seed(secret, chapter, student, notebook, grade_id, index):
    """The seed of one exercise's cases: a hash of the instructor's secret and where it is used."""
    text = "\x1f".join(map(str, (secret, chapter, student, notebook, grade_id, index)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (2**31 - 1)


def read_submission(data):
    """(notebook dict, None) or (None, why it cannot be graded)."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, f"the file is too large to be a notebook of this course ({len(data) / 1e6:.0f} MB)"
    try:
        nb = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        return None, f"the file is not a notebook (not valid JSON: {str(err)[:120]})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, "the file is JSON but not a notebook (it has no list of cells)"
    if not any(isinstance(c, dict) and c.get("cell_type") == "code" for c in nb["cells"]):
        return None, "the notebook has no code cells (was the wrong file handed in?)"
    return nb, None


def _points_text(x):
    return f"{x:g}"


def _short(text, n=300):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _cases(exercises, secret, chapter, student, notebook, grade_id):
    from gradflow.checks.exercise import plain_cases

    drawn = []
    for i, ex in enumerate(exercises):
        seed = case_seed(secret, chapter, student, notebook, grade_id, i)
        try:
            drawn.append(plain_cases(ex, seed))
        except Exception as err:  # noqa: BLE001 - a broken checker is the course's problem: say so
            drawn.append(err)
    return drawn


def grade_notebook(release_nb, data, *, chapter, notebook, student, secret, registry, runtime, limits=None,
                   uid=None, unsafe=False):
    """The verdict (a JSON-able dict) for the submission ``data`` (bytes) of ``notebook``."""
    limits = limits or sandbox.Limits()
    started = time.monotonic()
    result = {"schema": SCHEMA, "student": student, "chapter": chapter, "notebook": notebook,
              "graded_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "sha256": hashlib.sha256(data).hexdigest(), "status": "graded", "notes": [], "cells": {},
              "unsafe": bool(unsafe)}  # fmt: skip
    cells = planner.release_cells(release_nb)
    tests = planner.test_cells(cells)
    result["max"] = sum(tests.values())
    for gid, points in tests.items():
        result["cells"][gid] = {"points": points, "score": 0.0, "exercises": []}
    nb, why = read_submission(data)
    if nb is None:
        result.update(status="invalid", notes=[why], total=0.0, seconds=round(time.monotonic() - started, 2))
        return result
    plan = planner.make_plan(release_nb, nb, notebook)
    notes = list(plan.notes)
    # cases, drawn here: the sandbox gets them as plain data and nothing else of the checkers' state
    drawn, modules = {}, set()
    for gid in tests:
        exercises = registry.get(gid, [])
        drawn[gid] = list(zip(exercises, _cases(exercises, secret, chapter, student, notebook, gid), strict=True))
        for ex in exercises:
            from gradflow.checks.exercise import module_of

            modules.add(module_of(ex))
    steps, step_timeouts = [], {}
    for n, step in enumerate(plan.steps):
        if step["kind"] == "cell":
            steps.append({"kind": "cell", "label": step["label"], "source": step["source"],
                          "timeout": limits.cell_timeout})  # fmt: skip
            step_timeouts[n] = limits.cell_timeout
        else:
            items = [{"index": i, "name": ex.name, "cases": cases}
                     for i, (ex, cases) in enumerate(drawn.get(step["grade_id"], [])) if isinstance(cases, list)]
            steps.append({"kind": "probe", "grade_id": step["grade_id"], "label": step["label"], "exercises": items})
            step_timeouts[n] = sum(len(it["cases"]) * (max(1, float(drawn[step["grade_id"]][it["index"]][0].timeout))
                                                       + 1) for it in items) + 5  # fmt: skip
    answers, skipped, cell_notes, runs = {}, {}, {}, 0
    setup_failed = None
    while True:
        runs += 1
        remaining = limits.total_timeout - (time.monotonic() - started)
        run_limits = sandbox.Limits(**{**limits.__dict__, "total_timeout": max(5.0, remaining)})
        payload = {"modules": sorted(m for m in modules if m), "steps": steps, "skip": sorted(skipped)}
        run = sandbox.run(payload, data, f"{notebook}.ipynb", runtime, run_limits, uid=uid, unsafe=unsafe,
                          step_timeouts=step_timeouts)  # fmt: skip
        result.setdefault("runs", []).append({"seconds": round(run.seconds, 2), "killed": run.killed,
                                              "returncode": run.returncode, "peak_rss": run.peak_rss})
        failed = next((e.get("error") for e in run.events if e.get("event") == "failed"), None)
        for e in run.events:
            kind = e.get("event")
            if kind == "answers":
                key = (e.get("grade_id"), e.get("index"))
                if key not in answers and isinstance(e.get("outputs"), list):
                    answers[key] = e["outputs"]
            elif kind == "end" and isinstance(e.get("step"), int) and 0 <= e["step"] < len(steps):
                cell_notes[e["step"]] = e
        if run.answers_cut:
            notes.append("the notebook handed back more data than the grader reads; the rest was ignored")
        if run.finished() or failed:
            if failed:
                setup_failed = failed
            break
        where = run.current_step(limits.memory if run.killed == "memory" else None)
        if where is None or not run.ready():
            reason = KILLED.get(run.killed, f"ended unexpectedly (exit code {run.returncode})")
            setup_failed = f"the sandbox {reason}: {_short(run.stderr, 200) or 'no message'}"
            break
        if where == 0 and plan.steps and plan.steps[0].get("trusted"):
            setup_failed = f"the set-up cell {KILLED.get(run.killed, 'crashed the runner')}"
            break
        skipped[where] = KILLED.get(run.killed) or f"ended the Python process (exit code {run.returncode})"
        if run.killed == "total" or runs > MAX_RERUNS or time.monotonic() - started > limits.total_timeout:
            skipped.update({n: "did not run: the notebook's time ran out" for n in range(where + 1, len(steps))
                            if n not in skipped})  # fmt: skip
            break
    result["seconds"] = round(time.monotonic() - started, 2)
    staff = []  # for the instructor only: problems of the course or of the grading environment
    if setup_failed:
        result["status"] = "error"
        staff.append(f"could not be graded: {_short(setup_failed)} (a problem of the grading environment or of "
                     "the release, not of the student's work: see book/instructors.md)")
        notes.insert(0, "your notebook could not be graded because of a problem on the grader's side; your "
                        "instructor has been told")
    for n, step in enumerate(plan.steps):
        if n in skipped:
            what = "the set-up cell" if step.get("trusted") else step["label"]
            notes.append(f"{what} {skipped[n]}; it was skipped and the rest of the notebook graded without it")
            continue
        e = cell_notes.get(n)
        if step["kind"] != "cell" or e is None:
            continue
        if e.get("error"):
            verb = "" if e.get("timeout") else "raised "
            notes.append(f"{step['label']} {verb}{_short(e['error'], 200)}")
        if e.get("stderr"):
            notes.append(f"{step['label']} printed to stderr (not an error): {_short(e['stderr'], 160)}")
    for gid, points in tests.items():
        cell = result["cells"][gid]
        exercises = drawn[gid]
        if not exercises:
            result["status"] = "error"
            staff.append(f"{gid}: the course's checkers do not know this test cell (not registered): not graded")
            continue
        share = points / len(exercises)
        probe_step = next((n for n, s in enumerate(plan.steps) if s.get("grade_id") == gid), None)
        for i, (ex, cases) in enumerate(exercises):
            item = {"name": ex.name, "points": share, "score": 0.0, "message": None}
            if isinstance(cases, Exception):
                result["status"] = "error"
                item["message"] = (f"{ex.name}: not graded (a problem of the course's checker; your instructor "
                                   "has been told)")
                staff.append(f"{gid}: the checker {ex.name} could not draw its cases ({type(cases).__name__}: {cases})")
            elif probe_step in skipped:
                item["message"] = f"{ex.name}: the check {skipped[probe_step]}"
            elif (gid, i) not in answers:
                item["message"] = (f"{ex.name}: no answer was handed back" + (" (the grading stopped earlier)"
                                   if setup_failed or any(s < (probe_step or 0) for s in skipped) else ""))
            else:
                try:
                    message = ex.verdict(cases, answers[(gid, i)])
                except Exception as err:  # noqa: BLE001 - a judge must not crash; if it does, say so
                    message = f"{ex.name}: the checker failed on this answer ({type(err).__name__}: {err})"
                    staff.append(f"{gid}: {message}")
                if message is None:
                    item["score"] = share
                else:
                    item["message"] = _short(message, 600)
            cell["exercises"].append(item)
        cell["score"] = min(points, max(0.0, sum(it["score"] for it in cell["exercises"])))
    result["total"] = sum(c["score"] for c in result["cells"].values())
    result["notes"] = list(dict.fromkeys(notes))
    result["staff_notes"] = list(dict.fromkeys(staff))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m coursetools.judge", description=__doc__.splitlines()[0])
    p.add_argument("release", type=Path, help="the release notebook (dist/release/<chapter>/<notebook>.ipynb)")
    p.add_argument("submission", type=Path)
    p.add_argument("--student", required=True)
    p.add_argument("--chapter", required=True)
    p.add_argument("--out", type=Path, required=True, help="where the verdict JSON goes")
    p.add_argument("--secret-file", type=Path, default=None, help="default: $GRADING_SECRET")
    p.add_argument("--checkers", nargs="*", default=(), help="modules that register exercises (besides gradflow)")
    p.add_argument("--unsafe-no-sandbox", action="store_true")
    args = p.parse_args(argv)
    from gradflow.checks.exercise import load_registry

    secret = args.secret_file.read_text().strip() if args.secret_file else os.environ.get("GRADING_SECRET", "")
    if not secret:
        p.error("no secret: pass --secret-file or set GRADING_SECRET (the one in dist/grading/secret)")
    ok, why = sandbox.available()
    if not ok and not args.unsafe_no_sandbox:
        p.error(f"no sandbox: {why}")
    release = json.loads(args.release.read_text(encoding="utf-8"))
    registry = load_registry(("gradflow.checks", *args.checkers))
    with sandbox.Runtime([m for m in args.checkers if m.split(".")[0] != "gradflow"]) as rt:
        verdict = grade_notebook(release, args.submission.read_bytes(), chapter=args.chapter,
                                 notebook=args.release.stem, student=args.student, secret=secret,
                                 registry=registry, runtime=rt.path, unsafe=args.unsafe_no_sandbox,
                                 uid=1_600_000_000 + os.getpid() % 100_000 if os.getuid() == 0 else None)
    args.out.write_text(json.dumps(verdict, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

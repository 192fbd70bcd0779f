"""Grade one student's handed-in notebooks: a pure job, notebooks in, verdicts (JSON) out.

The grader process (this module) never runs a student's code. For a student it

1. builds each notebook's :class:`~coursetools.plan.Plan` from the trusted release and the submission;
2. draws each exercise's cases from the instructor's secret (per student, notebook, test cell and
   exercise, so hidden inputs differ between students and are reproducible on a regrade);
3. runs the plans in one sandbox (:mod:`coursetools.sandbox`; a pristine forked process per notebook),
   which hands back plain-data answers; a step that hangs past its limit, crashes the runner or
   exhausts a limit is skipped on a rerun, so it costs only its own exercise;
4. calls each exercise's ``verdict`` on the answers and gives each exercise its share of its test
   cell's points (the release's points, which ``make release`` copied from the source notebook),
   clamped to them.

Command line (for a batch system: each job needs the course's Python environment, the release
notebooks, the student's notebooks and the secret, in the environment)::

    GRADING_SECRET=... python -m coursetools.judge RELEASE.ipynb SUBMISSION.ipynb [RELEASE SUBMISSION ...] \\
        --student ID --chapter CH --out DIR

writes ``DIR/<notebook>.json``: what ``make grade`` saves as
``dist/grading/<chapter>/results/<student>/<notebook>.json``.
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from . import plan as planner
from . import sandbox

__all__ = ["MAX_NOTEBOOK_BYTES", "case_seed", "read_submission", "grade_student", "grade_notebook", "main"]

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


class _Notebook:
    """One handed-in notebook while its student is graded: its plan, cases, answers and what went wrong."""

    def __init__(self, name, release_nb, data, *, chapter, student, secret, registry, limits, unsafe):
        self.name, self.release, self.data = name, release_nb, data
        self.result = {"schema": SCHEMA, "student": student, "chapter": chapter, "notebook": name,
                       "graded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                       "sha256": hashlib.sha256(data).hexdigest(), "status": "graded", "notes": [], "cells": {},
                       "unsafe": bool(unsafe), "staff_notes": []}  # fmt: skip
        self.tests = planner.test_cells(planner.release_cells(release_nb))
        self.result["max"] = sum(self.tests.values())
        for gid, points in self.tests.items():
            self.result["cells"][gid] = {"points": points, "score": 0.0, "exercises": []}
        self.plan, self.finished, self.setup_failed = None, True, None
        self.answers, self.skipped, self.cell_notes, self.steps, self.step_timeouts = {}, {}, {}, [], {}
        self.drawn, self.modules = {}, set()
        nb, why = read_submission(data)
        if nb is None:
            self.result.update(status="invalid", notes=[why], total=0.0)
            return
        try:
            self.plan = planner.make_plan(release_nb, nb, name)
        except Exception as err:  # noqa: BLE001 - a notebook no rule foresaw: say so, grade the others
            self.result.update(status="error", total=0.0,
                               notes=["your notebook could not be read by the grader; your instructor has been told"],
                               staff_notes=[f"the plan could not be made: {type(err).__name__}: {_short(err, 200)}"])
            return
        self.finished = False
        from gradflow.checks.exercise import module_of

        # cases, drawn here: the sandbox gets them as plain data and nothing else of the checkers' state
        for gid in self.tests:
            exercises = registry.get(gid, [])
            self.drawn[gid] = list(zip(exercises, _cases(exercises, secret, chapter, student, name, gid), strict=True))
            self.modules |= {module_of(ex) for ex in exercises}
        for n, step in enumerate(self.plan.steps):
            if step["kind"] == "cell":
                self.steps.append({"kind": "cell", "label": step["label"], "source": step["source"],
                                   "timeout": limits.cell_timeout, "trusted": bool(step.get("trusted"))})
                self.step_timeouts[n] = limits.cell_timeout
            else:
                drawn = self.drawn.get(step["grade_id"], [])
                items = [{"index": i, "name": ex.name, "cases": cases}
                         for i, (ex, cases) in enumerate(drawn) if isinstance(cases, list)]
                self.steps.append({"kind": "probe", "grade_id": step["grade_id"], "label": step["label"],
                                   "exercises": items})
                self.step_timeouts[n] = sum(len(it["cases"]) * (max(1.0, float(drawn[it["index"]][0].timeout)) + 1)
                                            for it in items) + 5  # fmt: skip

    def take(self, event):
        """Keep what the runner said about this notebook: the first answer of each exercise, each cell's end."""
        kind, step = event.get("event"), event.get("step")
        if kind == "answers":
            key = (event.get("grade_id"), event.get("index"))
            if key not in self.answers and isinstance(event.get("outputs"), list):
                self.answers[key] = event["outputs"]
        elif kind == "end" and isinstance(step, int) and 0 <= step < len(self.steps):
            self.cell_notes[step] = event

    def verdict(self):
        """Fill in the result: notes, then each exercise's share of its test cell's points."""
        result, notes, staff = self.result, list(self.plan.notes), list(self.result["staff_notes"])
        setup = self.cell_notes.get(0) if self.steps and self.steps[0].get("trusted") else None
        if setup and setup.get("error") and not self.setup_failed:  # the release's own cell: not the student's doing
            self.setup_failed = f"the set-up cell raised {_short(setup['error'], 200)}"
        if self.setup_failed:
            result["status"] = "error"
            staff.append(f"could not be graded: {_short(self.setup_failed)} (a problem of the grading environment or "
                         "of the release, not of the student's work: see book/instructors.md)")
            notes.insert(0, "your notebook could not be graded because of a problem on the grader's side; your "
                            "instructor has been told")
        for n, step in enumerate(self.plan.steps):
            if n in self.skipped:
                what = "the set-up cell" if step.get("trusted") else step["label"]
                notes.append(f"{what} {self.skipped[n]}; it was skipped and the rest of the notebook graded without it")
                continue
            e = self.cell_notes.get(n)
            if step["kind"] != "cell" or e is None:
                continue
            if e.get("error"):
                verb = "" if e.get("timeout") else "raised "
                notes.append(f"{step['label']} {verb}{_short(e['error'], 200)}")
            if e.get("stderr"):
                notes.append(f"{step['label']} printed to stderr (not an error): {_short(e['stderr'], 160)}")
        for gid, points in self.tests.items():
            cell, exercises = result["cells"][gid], self.drawn[gid]
            if not exercises:
                result["status"] = "error"
                staff.append(f"{gid}: the course's checkers do not know this test cell (not registered): not graded")
                continue
            share = points / len(exercises)
            probe = next((n for n, s in enumerate(self.plan.steps) if s.get("grade_id") == gid), None)
            for i, (ex, cases) in enumerate(exercises):
                item = {"name": ex.name, "points": share, "score": 0.0, "message": None}
                if isinstance(cases, Exception):
                    result["status"] = "error"
                    item["message"] = (f"{ex.name}: not graded (a problem of the course's checker; your instructor "
                                       "has been told)")
                    staff.append(f"{gid}: the checker {ex.name} could not draw its cases "
                                 f"({type(cases).__name__}: {cases})")
                elif probe in self.skipped:
                    item["message"] = f"{ex.name}: the check {self.skipped[probe]}"
                elif (gid, i) not in self.answers:
                    earlier = self.setup_failed or any(s < (probe or 0) for s in self.skipped)
                    item["message"] = f"{ex.name}: no answer was handed back" + (
                        " (the grading stopped earlier)" if earlier else "")
                else:
                    try:
                        message = _verdict(ex, cases, self.answers[(gid, i)])
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


_VERDICTS, _VERDICTS_LOCK, _VERDICTS_MAX = {}, threading.Lock(), 4096


def _verdict(ex, cases, outputs):
    """``ex.verdict(cases, outputs)``, remembered: a judge is a pure function of the cases and the answers, so
    students who hand back the same answers to the same cases (a seed-independent exercise) cost one judging."""
    try:
        key = (id(ex), hashlib.sha256(json.dumps([cases, outputs], sort_keys=True).encode()).hexdigest())
    except (TypeError, ValueError):
        return ex.verdict(cases, outputs)
    with _VERDICTS_LOCK:
        if key in _VERDICTS:
            return _VERDICTS[key]
    message = ex.verdict(cases, outputs)
    with _VERDICTS_LOCK:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.pop(next(iter(_VERDICTS)))
        _VERDICTS[key] = message
    return message


def _ended(run, nb):
    """Why notebook ``nb``'s process stopped, from the runner's nb-ended event (exit code or signal)."""
    status = next((e.get("status") for e in run.events if e.get("event") == "nb-ended" and e.get("nb") == nb), None)
    if isinstance(status, int) and status > 0:
        if os.WIFSIGNALED(status):
            return f"ended the Python process (signal {os.WTERMSIG(status)})"
        return f"ended the Python process (exit code {os.WEXITSTATUS(status)})"
    if isinstance(status, int):
        return "ended the Python process (exit code 0)"
    return f"ended the Python process (exit code {run.returncode})"


def grade_student(notebooks, *, chapter, student, secret, registry, runtime, limits=None, uid=None, unsafe=False):
    """{notebook: verdict (a JSON-able dict)} for one student; ``notebooks`` is {name: (release dict, bytes)}.

    All of the student's notebooks share one sandbox (one start of Python and the chapter's imports); each
    runs in a pristine process forked for it. A step that hangs, crashes or exhausts a limit is skipped on
    a rerun of the notebooks not finished yet.
    """
    limits = limits or sandbox.Limits()
    started = time.monotonic()
    kw = {"chapter": chapter, "student": student, "secret": secret, "registry": registry, "limits": limits,
          "unsafe": unsafe}
    states = [_Notebook(name, rel, data, **kw) for name, (rel, data) in notebooks.items()]
    active = [st for st in states if not st.finished]
    budget = limits.total_timeout * max(1, len(active))
    modules = sorted({m for st in active for m in st.modules if m})
    runs = []
    while any(not st.finished for st in active):
        remaining = budget - (time.monotonic() - started)
        run_limits = sandbox.Limits(**{**limits.__dict__, "total_timeout": max(5.0, remaining)})
        payload = {"modules": modules, "notebooks": [{"steps": st.steps, "skip": sorted(st.skipped),
                                                      "done": st.finished} for st in active]}  # fmt: skip
        files = {f"{st.name}.ipynb": st.data for st in active}
        timeouts = {(i, n): t for i, st in enumerate(active) for n, t in st.step_timeouts.items()}
        run = sandbox.run(payload, files, runtime, run_limits, uid=uid, unsafe=unsafe, step_timeouts=timeouts)
        runs.append({"seconds": round(run.seconds, 2), "killed": run.killed, "returncode": run.returncode,
                     "peak_rss": run.peak_rss, "cpu": next((e.get("cpu") for e in run.events
                                                             if e.get("event") == "done"), None)})  # fmt: skip
        for e in run.events:
            nb = e.get("nb")
            if isinstance(nb, int) and 0 <= nb < len(active):
                active[nb].take(e)
        # "failed" is the runner's only before "ready": after it, student code runs and could forge one
        first = next((e for e in run.events if e.get("event") in ("failed", "ready")), {})
        failed = first.get("error") if first.get("event") == "failed" else None
        out_of_time = run.killed == "total" or len(runs) > MAX_RERUNS or time.monotonic() - started > budget
        for i, st in enumerate(active):
            if st.finished:
                continue
            if run.notebook_done(i):
                st.finished = True
                continue
            if run.answers_cut:
                st.plan.notes.append("the notebook handed back more data than the grader reads; the rest was ignored")
            if failed or not run.ready():
                reason = KILLED.get(run.killed, f"ended unexpectedly (exit code {run.returncode})")
                st.setup_failed = failed or f"the sandbox {reason}: {_short(run.stderr, 200) or 'no message'}"
                st.finished = True
                continue
            where = run.current_step(i, limits.memory if run.killed == "memory" else None)
            began = any(e.get("nb") == i for e in run.events)
            if where is None:
                if began or out_of_time:  # it stopped between steps, or there is no time to try again
                    st.skipped.update({n: "did not run: the grading of this notebook stopped early"
                                       for n in range(len(st.steps)) if n not in st.cell_notes and n not in st.skipped})
                    st.finished = True
                continue  # it never began: another notebook's trouble stopped the run; it runs next time
            if where == 0 and st.steps and st.steps[0].get("trusted"):
                st.setup_failed = f"the set-up cell {KILLED.get(run.killed) or _ended(run, i)}"
                st.finished = True
                continue
            st.skipped[where] = KILLED.get(run.killed) or _ended(run, i)
            if out_of_time:
                st.skipped.update({n: "did not run: the time for this notebook ran out"
                                   for n in range(where + 1, len(st.steps)) if n not in st.skipped})
                st.finished = True
    seconds = round(time.monotonic() - started, 2)
    out = {}
    for st in states:
        if st.plan is not None:
            st.verdict()
        st.result.update(seconds=seconds, runs=runs)
        out[st.name] = st.result
    return out


def grade_notebook(release_nb, data, *, notebook, **kwargs):
    """The verdict (a JSON-able dict) for the submission ``data`` (bytes) of one ``notebook``."""
    return grade_student({notebook: (release_nb, data)}, **kwargs)[notebook]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m coursetools.judge", description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="+", type=Path, metavar="RELEASE SUBMISSION",
                   help="release notebook (dist/release/<chapter>/<notebook>.ipynb), then the student's, per notebook")
    p.add_argument("--student", required=True)
    p.add_argument("--chapter", required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the verdicts, one <notebook>.json each")
    p.add_argument("--checkers", nargs="*", default=(), help="modules that register exercises (besides gradflow)")
    p.add_argument("--unsafe-no-sandbox", action="store_true")
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give pairs: RELEASE SUBMISSION [RELEASE SUBMISSION ...]")
    from gradflow.checks.exercise import load_registry

    secret = os.environ.get("GRADING_SECRET", "")
    if not secret:
        p.error("no secret: set GRADING_SECRET (the content of dist/grading/secret)")
    ok, why = sandbox.available()
    if not ok and not args.unsafe_no_sandbox:
        p.error(f"no sandbox: {why}")
    notebooks = {rel.stem: (json.loads(rel.read_text(encoding="utf-8")), sub.read_bytes())
                 for rel, sub in zip(args.pairs[::2], args.pairs[1::2], strict=True)}  # fmt: skip
    registry = load_registry(("gradflow.checks", *args.checkers))
    with sandbox.Runtime([m for m in args.checkers if m.split(".")[0] != "gradflow"]) as rt:
        verdicts = grade_student(notebooks, chapter=args.chapter, student=args.student, secret=secret,
                                 registry=registry, runtime=rt.path, unsafe=args.unsafe_no_sandbox,
                                 uid=1_600_000_000 + os.getpid() % 100_000 * 64 if os.getuid() == 0 else None)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, verdict in verdicts.items():
        (args.out / f"{name}.json").write_text(json.dumps(verdict, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

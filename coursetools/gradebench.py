"""The grading leg of the benchmark: how long `make grade` takes per student, and for a class.

For every chapter whose exercises can all be graded (or only ``--chapter``), a synthetic class
of N correct submissions (copies of the chapter's source notebooks) is graded, as ``make grade``
does (sandboxes, ``jobs`` at a time), for N = 1 and 8; then N = 64 for the chapter that was
slowest per student (with ``--chapter``: every N for that chapter). The
**floor** is a fresh Python process that imports the chapter's modules (the set-up cells of its
notebooks and its checker modules), measured three times outside any sandbox, one thread, as the
sandboxes run. Goals (issue 18): one student in at most twice the floor (every chapter), and 300
students of the slowest chapter in at most 10 minutes (extrapolated from its largest class:
seconds per student × 300). Each student is
graded in one sandbox for all their notebooks (see coursetools.judge).

``python -m coursetools.bench`` runs it as part of a full run; ``python -m coursetools.gradebench``
runs it alone. Either writes the table into ``book/benchmark.md`` between its markers.
"""

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["BUDGETS", "ready_chapter", "floor_seconds", "measure", "render", "update_page", "main"]

BUDGETS = {"grading_floor_ratio": 2.0, "grading_300_seconds": 600.0}
CLASS = 300
PAGE_BEGIN = "% BEGIN grading table: written by `python -m coursetools.gradebench`; do not edit by hand."
PAGE_END = "% END grading table"


def _graded_notebooks(root, chapter):
    from . import plan

    found = []
    for path in sorted((Path(root) / "book" / chapter).glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if plan.test_cells(plan.release_cells(nb)):
            found.append((path, nb))
    return found


def ready_chapter(root, chapter=None, checkers=()):
    """(chapter, None) for the first chapter (or ``chapter``) that can be graded, else (None, why not)."""
    from gradflow.checks.exercise import load_registry

    from . import assign, plan

    registry = load_registry(("gradflow.checks", *checkers))
    reasons = []
    for name in [chapter] if chapter else assign.chapters(root):
        why = None
        for path, nb in _graded_notebooks(root, name):
            cells = plan.release_cells(nb)
            missing = [g for g in plan.test_cells(cells) if not registry.get(g)]
            try:
                plan.check_release(cells, path.name)
            except plan.PlanError as err:
                why = str(err)
            if missing:
                why = f"{path.name}: not registered: {', '.join(missing)}"
            if why:
                break
        if why is None and _graded_notebooks(root, name):
            return name, None
        reasons.append(f"{name}: {why or 'no exercises'}")
    return None, "; ".join(reasons) or "no chapter with exercises"


def _floor_source(root, chapter, checkers=()):
    """The code a fresh process runs to import the chapter's modules: set-up cells and checker modules."""
    from IPython.core.inputtransformer2 import TransformerManager

    from gradflow.checks.exercise import load_registry, module_of

    from . import plan

    registry = load_registry(("gradflow.checks", *checkers))
    transform = TransformerManager().transform_cell
    parts = ["import IPython"]  # the runner's shell
    modules = set()
    for _, nb in _graded_notebooks(root, chapter):
        cells = plan.release_cells(nb)
        parts.append(transform(plan.setup_cell(cells).source).replace("get_ipython().run_line_magic", "print"))
        modules |= {module_of(ex) for g in plan.test_cells(cells) for ex in registry.get(g, [])}
    parts += [f"import {m}" for m in sorted(m for m in modules if m)]
    return "\n".join(parts)


def floor_seconds(root, chapter, runs=3, checkers=()):
    """Median wall time of a fresh ``python`` that imports the chapter's modules (one thread, no sandbox)."""
    source = _floor_source(root, chapter, checkers)
    paths = [str(Path(sys.modules[m].__file__).parent) for m in checkers if m in sys.modules]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", source], cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise RuntimeError(f"the floor failed: {proc.stderr.strip().splitlines()[-1:]}")
    return statistics.median(times), times


def _ready_chapters(root, checkers=()):
    from . import assign

    return [c for c in assign.chapters(root) if ready_chapter(root, c, checkers)[0] == c]


def _grade_class(root, course, chapter, n, jobs, checkers, notebooks, log):
    """Grade a synthetic class of ``n`` copies of the chapter's source notebooks; one row of the table."""
    from . import assign

    subs = course.parent / f"{chapter}-class-{n}"
    subs.mkdir()
    for i in range(n):
        for path, _ in notebooks:
            shutil.copy(path, subs / f"s{i:04d}_{path.stem}.ipynb")
    jobs = jobs if n > 1 else 1
    log(f"grading leg: {chapter}, {n} student(s), {jobs} job(s) ...")
    start = time.perf_counter()
    graded, _ = assign.grade(chapter, subs, root=course, jobs=jobs, out=io.StringIO(), checkers=checkers)
    wall = time.perf_counter() - start
    full = sum(1 for r in graded if r.total == r.max_score and r.status == "graded")
    shutil.rmtree(course / "dist" / "grading" / chapter, ignore_errors=True)
    shutil.rmtree(subs, ignore_errors=True)
    return {"students": n, "jobs": jobs, "seconds": wall, "per_student": wall / n, "full_marks": full,
            "notebooks": n * len(notebooks), "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def measure(root, chapter=None, ns=(1, 8, 64), jobs=None, log=print, checkers=()):
    """Grade synthetic classes of N correct submissions; the figures and whether they meet the goals.

    With ``chapter``: that chapter, every N of ``ns``. Without: every chapter whose exercises can all
    be graded, with each N of ``ns`` but the largest; then the largest N for the chapter that was
    slowest per student (the class goal is about the slowest chapter). ``checkers`` are modules that
    register exercises besides gradflow's (a test's demo assignment). The top-level ``chapter``,
    ``rows`` and ``floor_seconds`` of the report are the slowest chapter's; ``chapters`` holds all.
    """
    from . import assign

    root = Path(root).resolve()
    if chapter is not None:
        found, why = ready_chapter(root, chapter, checkers)
        names = [found] if found else []
    else:
        names = _ready_chapters(root, checkers)
        why = ready_chapter(root, None, checkers)[1] if not names else None
    if not names:
        return {"skipped": True, "reason": why}
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    ns = sorted(set(ns))
    small = ns if chapter is not None or len(ns) == 1 else ns[:-1]
    per = {}
    with tempfile.TemporaryDirectory(prefix="gradflow-gradebench-") as tmp:
        course = Path(tmp) / "course"
        (course / "book").mkdir(parents=True)
        shutil.copy(root / "nbgrader_config.py", course)
        for name in names:
            notebooks = _graded_notebooks(root, name)
            log(f"grading leg: {name}, floor ...")
            floor, floor_runs = floor_seconds(root, name, checkers=checkers)
            shutil.copytree(root / "book" / name, course / "book" / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))  # fmt: skip
            assign.release(name, root=course, out=io.StringIO())
            rows = [_grade_class(root, course, name, n, jobs, checkers, notebooks, log) for n in small]
            per[name] = {"notebooks": [p.name for p, _ in notebooks], "floor_seconds": floor, "floor_runs": floor_runs,
                         "rows": rows}  # fmt: skip
        slowest = max(per, key=lambda c: per[c]["rows"][-1]["per_student"])
        if ns[-1] not in [r["students"] for r in per[slowest]["rows"]]:
            per[slowest]["rows"].append(_grade_class(root, course, slowest, ns[-1], jobs, checkers,
                                                     _graded_notebooks(root, slowest), log))  # fmt: skip
    for entry in per.values():
        one = entry["rows"][0]["per_student"] if entry["rows"][0]["students"] == 1 else None
        entry["ratio_one_student"] = one / entry["floor_seconds"] if one else None
    head = per[slowest]
    biggest = max(head["rows"], key=lambda r: r["students"])
    ratios = [e["ratio_one_student"] for e in per.values()]
    report = {"skipped": False, "chapter": slowest, "slowest": slowest, "chapters": per, "jobs": jobs,
              "notebooks": head["notebooks"], "floor_seconds": head["floor_seconds"],
              "floor_runs": head["floor_runs"], "rows": head["rows"],
              "ratio_one_student": max(ratios) if all(r is not None for r in ratios) else None,
              "class_300_seconds": CLASS * biggest["seconds"] / biggest["students"],
              "budgets": dict(BUDGETS)}  # fmt: skip
    ratio, whole = report["ratio_one_student"], report["class_300_seconds"]
    report["within_budget"] = {"ratio": ratio is not None and ratio <= BUDGETS["grading_floor_ratio"],
                               "class": whole <= BUDGETS["grading_300_seconds"],
                               "full_marks": all(r["full_marks"] == r["notebooks"]
                                                 for e in per.values() for r in e["rows"])}  # fmt: skip
    return report


def _mark(ok):
    return "\u00a0✓" if ok else "\u00a0✗"


def render(report, machine=""):
    """The grading leg as Markdown (a context line and a table: one row per chapter and N)."""
    if report.get("skipped"):
        return f"Grading: not measured ({report['reason']}).\n"
    b, ok = report["budgets"], report["within_budget"]
    per = report.get("chapters") or {report["chapter"]: report}
    floors = ", ".join(f"`{c}` {e['floor_seconds']:.1f}\u00a0s" for c, e in per.items())
    lines = [
        f"Grading{machine}: a synthetic class of N correct submissions (copies of the source notebooks) graded"
        f" by `make grade`, each student in a sandbox of their own, {report['jobs']} at a time (one for N = 1);"
        f" the largest class for the chapter slowest per student (`{report['chapter']}`). The floor, a fresh"
        " Python process that imports the chapter's modules (median of 3): "
        f"{floors}. On a machine with other work the per-student ratio to the floor is steadier than the times;"
        " the last column is the load average when the row ended. The class estimate (seconds per student ×"
        " 300) is given for N > 1, which grades as many students at a time as there are cores.",
        "",
        f"| chapter | students N | wall time | per student | per student ÷ floor (≤ {b['grading_floor_ratio']:g}) "
        f"| 300 students (≤ {b['grading_300_seconds'] / 60:g} min) | notebooks with full marks | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in per.items():
        for r in entry["rows"]:
            ratio = r["per_student"] / entry["floor_seconds"]
            ratio_txt = f"{ratio:.2f}×" + (_mark(ratio <= b["grading_floor_ratio"]) if r["students"] == 1 else "")
            est = CLASS * r["per_student"]
            est_txt = f"{est / 60:.1f}\u00a0min{_mark(est <= b['grading_300_seconds'])}" if r["students"] > 1 else "—"
            load = f"{r['load']:.1f}" if r.get("load") is not None else "?"
            lines.append(f"| `{name}` | {r['students']} | {r['seconds']:.1f}\u00a0s | {r['per_student']:.2f}\u00a0s "
                         f"| {ratio_txt} | {est_txt} "
                         f"| {r['full_marks']}/{r['notebooks']} | {load} |")
    verdict = "every goal met" if all(ok.values()) else "missed: " + ", ".join(k for k, v in ok.items() if not v)
    lines += ["", f"Grading result: {verdict}."]
    return "\n".join(lines) + "\n"


def update_page(page, table):
    """Replace the text between the grading markers of ``page``; False if they are missing."""
    page = Path(page)
    if not page.is_file():
        return False
    text = page.read_text(encoding="utf-8")
    begin, end = text.find(PAGE_BEGIN), text.find(PAGE_END)
    if begin < 0 or end < begin:
        return False
    page.write_text(text[: begin + len(PAGE_BEGIN)] + "\n\n" + table.strip() + "\n\n" + text[end:], encoding="utf-8")
    return True


def machine_line():
    cores = os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.2f} at the start" if hasattr(os, "getloadavg") else ""
    return f" on {cores} cores{load}"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m coursetools.gradebench", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--chapter", default=None)
    p.add_argument("--ns", type=int, nargs="*", default=[1, 8, 64])
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--no-page", action="store_true", help="do not write the table into book/benchmark.md")
    args = p.parse_args(argv)
    log = lambda msg: print(f"[gradebench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    where = machine_line()
    report = measure(args.root, args.chapter, tuple(args.ns), args.jobs, log)
    table = render(report, where)
    out = args.root / "_build"
    out.mkdir(exist_ok=True)
    (out / "grading-bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table)
    if not args.no_page and not report.get("skipped") and update_page(args.root / "book" / "benchmark.md", table):
        log("updated the grading table in book/benchmark.md")
    return 0 if report.get("skipped") or all(report["within_budget"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run the notebooks under nbval in several numeric environments or seeds; print what fails where.

    python -m coursetools.matrix portable [NOTEBOOK ...]   # native, MKL's other code paths, ATen's
                                                           # default kernels, one thread (make portable)
    python -m coursetools.matrix seeds [NOTEBOOK ...]      # GRADFLOW_SEED=0..4 (make seeds)
    python -m coursetools.matrix --leg "MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default"   # any legs

A *leg* is a set of environment variables. Each (leg, notebook) pair runs in its own
``pytest --nbval`` process (a fresh kernel that inherits the variables), ``--jobs`` of them at a
time; a small pytest plugin in this module records every failing cell by its cell id. The table
lists, per leg, each failing cell with a short reason, and the exit status is 1 if any cell failed.

What each leg protects (see the README): a reader's CPU makes MKL pick its AVX-512, AVX2 or
SSE2 ("compatible") kernels, and ATen its vectorised or plain ones, so floats differ in the last
bits between machines; thread counts change the order of reductions; and a claim in the text must
hold for any seed a reader types in the notebook's ``SEED = ...`` line, not only for seed 0.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Leg:
    """One numeric environment: a short name (for ``--only``) and the variables it sets."""

    name: str
    env: tuple = ()  # (("MKL_CBWR", "AVX2"), ...)

    @property
    def label(self):
        return " ".join(f"{k}={v}" for k, v in self.env) or "native"


def leg_from_spec(spec):
    """``"native"`` or ``"VAR=VALUE VAR2=VALUE2"`` as a :class:`Leg`."""
    spec = spec.strip()
    if spec in ("", "native"):
        return Leg("native")
    pairs = []
    for item in spec.split():
        key, sep, val = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not VAR=VALUE: {item!r} in leg {spec!r}")
        pairs.append((key, val))
    return Leg(spec, tuple(pairs))


PORTABLE = [
    Leg("native"),
    Leg("compatible", (("MKL_CBWR", "COMPATIBLE"),)),
    Leg("avx2", (("MKL_CBWR", "AVX2"),)),
    Leg("avx512", (("MKL_CBWR", "AVX512"),)),
    Leg("aten-default", (("ATEN_CPU_CAPABILITY", "default"),)),
    Leg("one-thread", (("OMP_NUM_THREADS", "1"),)),
]
SEEDS = [Leg(f"seed-{s}", (("GRADFLOW_SEED", str(s)),)) for s in range(5)]
# the leg `make test` runs on top of the native nbval run: the least native of the portable legs
CHEAP = Leg("compatible+aten-default", (("MKL_CBWR", "COMPATIBLE"), ("ATEN_CPU_CAPABILITY", "default")))
PRESETS = {"portable": PORTABLE, "seeds": SEEDS, "cheap": [CHEAP]}
# variables a leg may set: cleared for every leg, so the caller's shell cannot leak into "native"
CONTROLLED = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GRADFLOW_SEED")


def find_notebooks(paths):
    """The ``.ipynb`` files named by ``paths`` (files or folders), sorted; ``book/`` when empty."""
    found = []
    for p in [Path(p) for p in paths] or [ROOT / "book"]:
        if p.is_dir():
            found += [q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts and "_build" not in q.parts]
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no notebook at {p}")
    return sorted({q.resolve() for q in found})


def default_jobs():
    """Parallel nbval processes: one per two cores (each kernel may use two threads), at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@dataclass
class Failure:
    notebook: str
    cell: str  # the cell's id (or "Cell N" for a notebook without ids); "-" when no cell ran
    reason: str


@dataclass
class Result:
    leg: Leg
    notebook: str
    passed: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0


def _display(path):
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_one(leg, notebook, timeout=1800, cell_timeout=600, python=sys.executable):
    """Run one notebook under nbval with ``leg``'s variables; a :class:`Result` (never raises)."""
    name = _display(notebook)
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(dict(leg.env))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="matrix-") as tmp:
        report = Path(tmp) / "cells.json"
        env["GRADFLOW_MATRIX_REPORT"] = str(report)
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "coursetools.matrix", "--nbval",
               "--nbval-current-env", f"--nbval-cell-timeout={cell_timeout}", "-o", "addopts=",
               "--rootdir", str(Path(notebook).parent), str(notebook)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
            code, tail = proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            code, tail = None, [f"timed out after {timeout} s"]
        cells = json.loads(report.read_text()) if report.exists() else []
    result = Result(leg, name, seconds=time.monotonic() - started)
    for c in cells:
        if c["outcome"] == "passed":
            result.passed += 1
        elif c["outcome"] == "failed":
            result.failures.append(Failure(name, c["cell"], c["reason"]))
    if code != 0 and not result.failures:  # a crash before or between cells: say what pytest said
        why = tail[0] if tail else f"pytest exited with {code}"
        result.failures.append(Failure(name, "-", why[:200] if code is not None else why))
    return result


def run(legs, notebooks, jobs=None, timeout=1800, log=sys.stderr):
    """Every (leg, notebook) pair, ``jobs`` at a time; the list of :class:`Result`, in leg order."""
    tasks = [(leg, nb) for leg in legs for nb in notebooks]
    jobs = jobs or default_jobs()

    def one(task):
        res = run_one(*task, timeout=timeout)
        status = "ok" if not res.failures else f"{len(res.failures)} failing"
        print(f"  {res.leg.label:<42} {res.notebook:<48} {status} ({res.seconds:.0f} s)", file=log, flush=True)
        return res

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, tasks))


def table(results, legs):
    """A Markdown table: leg x failing cells (notebook, cell id, short reason); one line per passing leg."""
    rows = ["| environment | notebook | cell | reason |", "|---|---|---|---|"]
    for leg in legs:
        mine = [r for r in results if r.leg == leg]
        failures = [f for r in mine for f in r.failures]
        if not failures:
            cells = sum(r.passed for r in mine)
            rows.append(f"| {leg.label} | all {len(mine)} pass | {cells} cells | |")
        for f in failures:
            rows.append(f"| {leg.label} | {f.notebook} | {f.cell} | {f.reason.replace('|', '/')} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m coursetools.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="[portable|seeds|cheap] NOTEBOOK",
                        help="a set of legs (default: portable, unless --leg is given), then notebooks or folders "
                             "(default: book/)")
    parser.add_argument("--leg", action="append", default=[], help='a leg: "native" or "VAR=VALUE VAR2=VALUE2"')
    parser.add_argument("--only", default="", help="comma-separated leg names of the preset, e.g. avx2,seed-3")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "0")) or None,
                        help="parallel nbval processes (default: one per two cores)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per notebook and leg")
    args = parser.parse_intermixed_args(argv)

    preset = args.paths.pop(0) if args.paths and args.paths[0] in PRESETS else None
    legs = [leg_from_spec(s) for s in args.leg]
    if preset or not legs:
        legs = PRESETS[preset or "portable"] + legs
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {leg.name for leg in legs})
        if unknown:
            parser.error(f"unknown leg(s) {', '.join(unknown)}; choose from {', '.join(leg.name for leg in legs)}")
        legs = [leg for leg in legs if leg.name in wanted]
    notebooks = find_notebooks(args.paths)
    jobs = args.jobs or default_jobs()
    print(f"{len(legs)} leg(s) x {len(notebooks)} notebook(s), {jobs} at a time", file=sys.stderr, flush=True)
    started = time.monotonic()
    results = run(legs, notebooks, jobs=jobs, timeout=args.timeout)
    failed = sum(len(r.failures) for r in results)
    print()
    print(table(results, legs))
    print(f"\n{failed} failing cell(s); {time.monotonic() - started:.0f} s wall, "
          f"{sum(r.seconds for r in results):.0f} s of notebook runs")
    return 1 if failed else 0


# ---------------------------------------------------------------- the pytest plugin (-p coursetools.matrix)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(item, excinfo):
    """A one-line reason: the exception and its message, or the failing line of a bare assert."""
    outputs = getattr(item, "test_outputs", None) or []
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if errors:
        err = errors[-1]
        text = f"{err.get('ename', 'Error')}: {_ANSI.sub('', str(err.get('evalue', ''))).strip()}".strip()
        if text.endswith(":"):  # a bare assert: quote the line the traceback points at
            lines = [_ANSI.sub("", t) for t in err.get("traceback", [])]
            arrows = [ln for t in lines for ln in t.splitlines() if ln.lstrip().startswith("---->")]
            if arrows:
                text += " " + re.sub(r"^\s*---->\s*\d*\s*", "", arrows[-1]).strip()
        return " ".join(text.split())[:200]
    msg = str(excinfo.value) if excinfo is not None else "failed"
    return " ".join(_ANSI.sub("", msg).split())[:200]


def _record(entry):
    path = os.environ.get("GRADFLOW_MATRIX_REPORT")
    if not path:
        return
    p = Path(path)
    cells = json.loads(p.read_text()) if p.exists() else []
    cells.append(entry)
    p.write_text(json.dumps(cells))


def pytest_runtest_makereport(item, call):
    """Record each notebook cell's outcome, by cell id, in $GRADFLOW_MATRIX_REPORT."""
    cell = getattr(item, "cell", None)
    if cell is None or call.when != "call":
        return
    cell_id = cell.get("id") or item.name
    if call.excinfo is None:
        _record({"cell": cell_id, "outcome": "passed", "reason": ""})
    elif call.excinfo.errisinstance(BaseException) and call.excinfo.typename == "Skipped":
        _record({"cell": cell_id, "outcome": "skipped", "reason": ""})
    else:
        _record({"cell": cell_id, "outcome": "failed", "reason": _reason(item, call.excinfo)})


if __name__ == "__main__":
    sys.exit(main())

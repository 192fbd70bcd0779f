"""Installs that work the same everywhere (issue 17 items 1, 7, 8, 9).

- requirements.txt resolves to the CPU torch, with no nvidia-*, cuda-* or triton package, by a
  pip dry run that ignores this machine's local wheels and pip configuration (``--isolated``);
- coursetools.pipinstall leaves out an index that does not answer instead of letting pip retry it;
- the Makefile: ``make clean`` keeps grades, ``make clean-grades`` asks first, ``make help``,
  and a ``PYTHON=`` that differs from the existing .venv's is refused with a message;
- the workflow: permissions per job, a pip cache, a concurrency group.
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from coursetools import pipinstall

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple/"
CUDA = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path):
    """{name: version} of the exact pins of a requirements file whose markers hold here."""
    from packaging.requirements import Requirement

    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            (spec,) = req.specifier
            pins[_canon(req.name)] = spec.version
    return pins


# ---------------------------------------------------------------- requirements.txt: the CPU torch


def _stand_in_for_the_cpu_index(folder):
    """A wheel with the metadata of the installed torch (from PyPI's CPU index): dependencies only."""
    dist = importlib.metadata.distribution("torch")
    assert dist.version.endswith("+cpu"), f"the installed torch is {dist.version}, not the CPU build"
    info = f"torch-{dist.version}.dist-info"
    wheel = Path(folder) / f"torch-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", dist.read_text("METADATA"))
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_requirements_resolve_to_the_cpu_torch_without_local_wheels(tmp_path):
    """pip --isolated: no pip.conf, no PIP_* variables, so no local wheel mirror: PyPI (+ the CPU index).

    Where PyTorch's CPU index does not answer (as on the course's build machine), it is replaced by
    a folder holding one wheel with the metadata of the installed torch, which came from that
    index: the resolution of everything else, and of torch's own dependencies, is still PyPI's.
    """
    if not pipinstall.reachable(PYPI):
        message = f"{PYPI} does not answer: cannot resolve requirements.txt without local wheels"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    args = ["-r", str(REQUIREMENTS)]
    cpu_index = pipinstall.reachable(CPU_INDEX)
    if not cpu_index:
        links = tmp_path / "cpu-index"
        links.mkdir()
        _stand_in_for_the_cpu_index(links)
        req = pipinstall.without_indexes(REQUIREMENTS, {CPU_INDEX}, tmp_path / "requirements.txt")
        args = ["--find-links", str(links), "-r", str(req)]
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                          "--quiet", "--report", str(report), *args],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    resolved = {_canon(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    cuda = sorted(n for n in resolved if CUDA.match(n))
    assert not cuda, f"requirements.txt pulls the CUDA build: {cuda}"
    assert resolved["torch"] == "2.13.0+cpu"
    for name, version in _pins(REQUIREMENTS).items():
        assert resolved.get(name) == version, f"{name}: pinned {version}, resolved {resolved.get(name)}"
    sources = {i["download_info"]["url"] for i in installs}
    assert not [u for u in sources if u.startswith("file:") and "cpu-index" not in u], "a local wheel was used"
    print(f"resolved {len(resolved)} packages from PyPI"
          f"{' and the CPU index' if cpu_index else ' (the CPU index stood in for by the installed torch metadata)'}")


def test_binder_pins_the_same_versions_as_requirements():
    binder, main = _pins(ROOT / "binder/requirements.txt"), _pins(REQUIREMENTS)
    assert binder, "binder/requirements.txt pins nothing"
    assert {n: v for n, v in binder.items() if main.get(n) != v} == {}
    text = (ROOT / "binder/requirements.txt").read_text()
    assert f"--extra-index-url {CPU_INDEX}" in text and "torch==2.13.0+cpu" in text


# ---------------------------------------------------------------- coursetools.pipinstall


def test_pipinstall_leaves_out_only_the_indexes_that_do_not_answer(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pins\n--extra-index-url https://dead.example/simple\n--extra-index-url https://alive.example/x\n"
                   "torch==2.13.0+cpu\n-e .\n")
    probed = []

    def probe(url):
        probed.append(url)
        return "alive" in url

    args, copies = pipinstall.plan(["--quiet", "-r", str(req), "-r", str(req)], probe=probe, out=open(os.devnull, "w"))
    try:
        assert probed == ["https://dead.example/simple", "https://alive.example/x"]  # each index once
        assert args[0] == "--quiet" and args[1] == "-r" and args[2] != str(req)
        copy = Path(args[2])
        assert copy.parent == req.parent  # beside the original: relative paths inside still resolve
        assert copy.read_text() == "# pins\n--extra-index-url https://alive.example/x\ntorch==2.13.0+cpu\n-e .\n"
    finally:
        for c in copies:
            c.unlink()
    args, copies = pipinstall.plan([f"--requirement={req}"], probe=lambda url: True)
    assert args == [f"--requirement={req}"] and copies == []


def test_an_index_that_does_not_answer_is_found_out_quickly():
    t0 = time.perf_counter()
    assert not pipinstall.reachable("https://unreachable.invalid/simple/", timeout=5)
    assert time.perf_counter() - t0 < 30


def test_an_index_that_answers_with_an_error_status_is_reachable(monkeypatch):
    def refuse(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 403, "Forbidden", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    assert pipinstall.reachable("https://example.org/simple/")


# ---------------------------------------------------------------- the Makefile


def _make(folder, *args, **env):
    return subprocess.run(["make", "--no-print-directory", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def _tree(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    files = ["_build/html/index.html", "_build/.doctrees/environment.pickle",
             "dist/release/01_vanishing/vanishing.ipynb", "dist/logs/release-01_vanishing.log",
             "dist/student-repo/README.md",
             "dist/grading/secret", "dist/grading/01_vanishing/adjustments.csv",
             "dist/grading/01_vanishing/results/jdoe/vanishing.json", "dist/nbgrader.db", "dist/gradebook.db",
             "dist/grades.csv", "dist/grades/01_vanishing.csv",
             "dist/feedback/jdoe/01_vanishing/vanishing.html", "dist/submitted/jdoe/01_vanishing/vanishing.ipynb",
             "dist/autograded/jdoe/01_vanishing/vanishing.ipynb", "dist/notes-by-the-instructor.txt"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    return files


def _left(tmp_path):
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                  and p.name != "Makefile")


def test_make_clean_never_deletes_grades(tmp_path):
    files = _tree(tmp_path)
    run = _make(tmp_path, "clean")
    assert run.returncode == 0, run.stderr
    kept = [f for f in files if not f.startswith(("_build/", "dist/release/", "dist/logs/", "dist/student-repo/"))]
    assert _left(tmp_path) == sorted(kept)
    assert "dist/grading/secret" in kept and "dist/nbgrader.db" in kept and "dist/gradebook.db" in kept


def test_make_clean_grades_asks_first(tmp_path):
    _tree(tmp_path)
    before = _left(tmp_path)
    run = _make(tmp_path, "clean-grades")
    assert run.returncode != 0 and "CONFIRM=yes" in run.stdout
    assert _left(tmp_path) == before, "clean-grades without CONFIRM=yes deleted something"
    run = _make(tmp_path, "clean-grades", "CONFIRM=yes")
    assert run.returncode == 0, run.stderr
    left = _left(tmp_path)
    assert not [f for f in left if f.startswith(("dist/grading", "dist/grade", "dist/feedback", "dist/submitted",
                                                   "dist/autograded", "dist/nbgrader"))], left
    assert "dist/notes-by-the-instructor.txt" in left and "dist/release/01_vanishing/vanishing.ipynb" in left


def test_make_help_lists_every_command(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    run = _make(tmp_path)  # the default goal
    assert run.returncode == 0, run.stderr
    listed = re.findall(r"^  make ([a-z-]+)", run.stdout, flags=re.M)
    targets = re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M)
    assert set(listed) == set(targets), f"undocumented: {set(targets) - set(listed)}"
    for name in ("book", "test", "clean", "clean-grades", "fork", "help"):
        assert name in listed


def test_a_different_python_is_not_silently_ignored(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text("#!/bin/sh\necho 3.10.2\n")  # stands for a .venv made by Python 3.10.2
    (venv_bin / "python").chmod(0o755)
    run = _make(tmp_path, "-n", "book", f"PYTHON={sys.executable}")
    assert run.returncode != 0
    assert "made with Python 3.10.2" in run.stderr and "make clean-venv" in run.stderr
    assert _make(tmp_path, "-n", "clean", f"PYTHON={sys.executable}").returncode == 0


def test_requires_python_matches_the_code():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"  # coursetools.bench uses datetime.UTC (3.11)
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"


# ---------------------------------------------------------------- the workflow


def _workflow():
    return yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())


def test_workflow_grants_write_permissions_only_to_the_deploy_job():
    wf = _workflow()
    assert wf.get("permissions") == {"contents": "read"}, "the workflow's default permissions must be read-only"
    writers = {}
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", wf["permissions"])
        assert isinstance(perms, dict), f"job {name}: permissions must be a mapping, not {perms!r}"
        writes = {k for k, v in perms.items() if v == "write"}
        if writes:
            writers[name] = writes
    deploy = [n for n, j in wf["jobs"].items() if any("deploy-pages" in s.get("uses", "") for s in j.get("steps", []))]
    assert deploy == ["deploy"]
    assert writers == {"deploy": {"pages", "id-token"}}
    assert "github.event_name == 'push'" in wf["jobs"]["deploy"]["if"]  # never for a pull request
    for name, job in wf["jobs"].items():  # jobs that run the pull request's code get no write token
        if any(s.get("run") for s in job.get("steps", [])):
            assert name not in writers


def test_workflow_caches_pip_and_cancels_superseded_runs():
    wf = _workflow()
    concurrency = wf.get("concurrency")
    assert concurrency and "github.ref" in concurrency["group"]
    assert "cancel-in-progress" in concurrency
    for name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            if "setup-python" in step.get("uses", ""):
                assert step["with"].get("cache") == "pip", f"job {name}: setup-python without the pip cache"
                assert "requirements.txt" in step["with"].get("cache-dependency-path", "")


# ---------------------------------------------------------------- citation and licence


def test_citation_and_licence_name_the_course_its_authors_and_its_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    licence = (ROOT / "LICENSE").read_text()
    assert cff["cff-version"] == "1.2.0" and cff["title"] == config["title"]
    assert cff["authors"] == [{"name": config["author"]}]
    assert sorted(cff["license"]) == ["CC-BY-4.0", "MIT"]
    # the original's URL: a fork (make fork) changes _config.yml, but cites and credits the original
    url = cff["repository-code"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    assert f'"{config["title"]}"' in licence and config["author"] in licence and url in licence

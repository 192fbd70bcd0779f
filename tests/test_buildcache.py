"""`make book` executes the pages again when the code they import changes (issue 17 item 6).

A tiny book with one notebook that prints a value from a tiny package, built three times with
jupyter-book: unchanged code executes nothing the second time; a changed package executes the
notebook again and the page shows the new value. A page that reads another file (as the
instructors' table reads the chapters) is read again when that file changes.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coursetools import buildcache

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).parent / "jupyter-book"


def _notebook(source):
    return json.dumps({"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# Page\n"]},
                                 {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": None,
                                  "outputs": [], "source": [source]}],
                       "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                   "language": "python"}},
                       "nbformat": 4, "nbformat_minor": 5})


def _book(tmp_path):
    (tmp_path / "fpkg").mkdir()
    (tmp_path / "fpkg" / "__init__.py").write_text("VALUE = 'first value'\n")
    (tmp_path / "_config.yml").write_text(textwrap.dedent("""
        title: t
        only_build_toc_files: true
        exclude_patterns: [_build, fpkg]
        execute:
          execute_notebooks: force
        sphinx:
          extra_extensions: [coursetools.buildcache]
          config:
            coursetools_fingerprint_packages: [fpkg]
            coursetools_doc_dependencies:
              count: ["data/*.txt"]
        """))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\nchapters:\n  - file: count\n")
    (tmp_path / "page.ipynb").write_text(_notebook("import fpkg\nprint('value:', fpkg.VALUE)"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one\n")
    (tmp_path / "count.ipynb").write_text(_notebook(
        "from pathlib import Path\nprint('lines:', len(Path('data/a.txt').read_text().split()))"))


def _build(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.run([str(JB), "build", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    executed = re.findall(r"(\w+)\.ipynb: Executing notebook", run.stdout + run.stderr)
    return sorted(executed), run.stdout


def _page(tmp_path, name):
    return (tmp_path / "_build" / "html" / f"{name}.html").read_text()


def test_a_change_to_the_code_executes_the_notebooks_again(tmp_path):
    if not JB.exists():
        pytest.skip(f"no {JB}")
    _book(tmp_path)
    executed, _ = _build(tmp_path)
    assert executed == ["count", "page"] and "first value" in _page(tmp_path, "page")

    executed, log = _build(tmp_path)  # nothing changed: nothing executes
    assert executed == [], log[-2000:]

    (tmp_path / "fpkg" / "__init__.py").write_text("VALUE = 'second value'\n")
    executed, log = _build(tmp_path)
    assert executed == ["count", "page"]
    assert "config changed ('coursetools_code_fingerprint')" in log
    assert "second value" in _page(tmp_path, "page") and "first value" not in _page(tmp_path, "page")

    (tmp_path / "data" / "a.txt").write_text("one two three\n")  # a file the count page reads
    executed, _ = _build(tmp_path)
    assert executed == ["count"] and "lines: 3" in _page(tmp_path, "count")


def test_the_fingerprint_follows_files_and_installed_versions(tmp_path, monkeypatch):
    (tmp_path / "fpkg").mkdir()
    (tmp_path / "fpkg" / "__init__.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = buildcache.fingerprint(["fpkg"])
    assert buildcache.fingerprint(["fpkg"]) == first
    (tmp_path / "fpkg" / "data.json").write_text("{}")  # package data counts too
    second = buildcache.fingerprint(["fpkg"])
    assert second != first
    (tmp_path / "fpkg" / "__pycache__").mkdir()
    (tmp_path / "fpkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")  # but not byte code
    assert buildcache.fingerprint(["fpkg"]) == second
    monkeypatch.setattr(buildcache.platform, "python_version", lambda: "3.99.0")
    assert buildcache.fingerprint(["fpkg"]) != second
    with pytest.raises(ValueError, match="no package 'nonexistent_pkg_xyz'"):
        buildcache.fingerprint(["nonexistent_pkg_xyz"])


def test_the_book_uses_it():
    config = (ROOT / "_config.yml").read_text()
    assert "- coursetools.buildcache" in config
    assert set(buildcache.DEFAULT_PACKAGES) == {"gradflow", "coursetools"}

"""The student repository (issue 17 items 4 and 5): self-contained, plain markdown, pinned, and it runs.

``coursetools.studentrepo`` writes the student release of every chapter, ``gradflow`` with a
``pyproject.toml``, and ``binder/``. The slow test installs ``binder/requirements.txt`` into a
fresh virtual environment (as Binder's repo2docker does: ``pip install -r binder/requirements.txt``
from the repository's root, where ``-e .`` needs the ``pyproject.toml``) and runs every notebook
top to bottom in a kernel of that environment: the only errors allowed are in the exercises'
solution cells (``NotImplementedError``) and their test cells, and no cell may fail with a
``NameError`` (a release must leave every name defined).
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from coursetools import mystplain, repo, studentrepo

ROOT = Path(__file__).resolve().parents[1]
REF = repo.head_commit(ROOT) or "main"


@pytest.fixture(scope="module")
def student_repo(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "repo"
    studentrepo.build(out, root=ROOT, ref=REF, log=lambda *a: None)
    return out


def _notebooks(folder):
    return sorted(Path(folder).rglob("*.ipynb"))


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def test_it_holds_the_release_gradflow_and_binder_and_nothing_else(student_repo):
    top = sorted(p.name for p in student_repo.iterdir())
    chapters = sorted(p.name for p in (ROOT / "book").iterdir() if p.is_dir() and p.name[:2].isdigit()
                      and any(p.glob("*.ipynb")))
    assert top == sorted([*chapters, "LICENSE", "README.md", "binder", "gradflow", "notation.ipynb",
                          "pyproject.toml"])
    for chapter in chapters:
        assert sorted(p.name for p in (student_repo / chapter).iterdir()) == \
            sorted(p.name for p in (ROOT / "book" / chapter).glob("*.ipynb"))
    project = tomllib.loads((student_repo / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["gradflow*"]
    assert "-e ." in (student_repo / "binder" / "requirements.txt").read_text().splitlines()
    assert not list(student_repo.rglob("__pycache__"))
    text = "".join(p.read_text() for p in student_repo.rglob("*") if p.is_file())
    for leak in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "import coursetools", "from coursetools",
                 "nbgrader_config"):
        assert leak not in text, f"the student repository contains {leak!r}"


def test_notebooks_read_as_plain_markdown_and_install_the_pinned_gradflow(student_repo):
    url = repo.current_url(ROOT)
    for path in _notebooks(student_repo):
        nb = json.loads(path.read_text())
        assert repo.read_guard(nb) == (url, REF), path
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                left = mystplain.find_myst("".join(cell["source"]))
                assert not left, f"{path.name}, cell {cell.get('id')}: MyST left for Jupyter: {left}"
            else:
                assert not cell["outputs"] and cell["execution_count"] is None


def test_it_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(studentrepo.StudentRepoError, match="not overwriting"):
        studentrepo.build(tmp_path, root=ROOT, ref=REF, log=lambda *a: None)
    assert (tmp_path / "mine.txt").exists()


def _install(student_repo, venv):
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    run = subprocess.run([str(py), str(ROOT / "coursetools" / "pipinstall.py"), "--quiet", "-r",
                          "binder/requirements.txt"], cwd=student_repo, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout
    where = subprocess.run([str(py), "-c", "import gradflow, torch; print(gradflow.__file__, torch.__version__)"],
                           capture_output=True, text=True, timeout=300, cwd=venv)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(student_repo / "gradflow")), where.stdout  # the repository's copy
    subprocess.run([str(py), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "studentrepo"],
                   check=True, capture_output=True, timeout=300)
    return py


@pytest.mark.slow
def test_it_installs_in_a_fresh_venv_and_its_notebooks_run_top_to_bottom(student_repo, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    venv = tmp_path / "venv"
    _install(student_repo, venv)
    monkeypatch.setenv("JUPYTER_PATH", str(venv / "share" / "jupyter"))
    problems = []
    for path in _notebooks(student_repo):
        nb = nbformat.read(path, 4)
        client = nbclient.NotebookClient(nb, kernel_name="studentrepo", timeout=600, allow_errors=True,
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute()
        for cell in nb.cells:
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if not errors:
                continue
            (err,) = errors
            where = f"{path.relative_to(student_repo)}, cell {cell.get('id')}: {err.ename}: {err.evalue[:200]}"
            meta = _nbgrader(cell)
            if err.ename == "NameError":
                problems.append(where + " (a name the release leaves undefined)")
            elif meta.get("solution"):
                if err.ename != "NotImplementedError":
                    problems.append(where + " (a solution cell should raise NotImplementedError)")
            elif not meta.get("grade"):
                problems.append(where)
    assert not problems, "\n".join(problems)


def test_the_release_transform_makes_a_released_notebook_plain_and_pinned(tmp_path):
    src = ROOT / "book" / "02_residual" / "residual.ipynb"
    nb = json.loads(src.read_text())
    before = [(c.get("id"), c["cell_type"], c.get("metadata")) for c in nb["cells"]]
    out = studentrepo.for_students(nb, tmp_path / "dist" / "release" / "02_residual" / "residual.ipynb", root=ROOT)
    assert out is nb and [(c.get("id"), c["cell_type"], c.get("metadata")) for c in nb["cells"]] == before
    assert repo.read_guard(nb) == (repo.current_url(ROOT), REF)
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert not [x for text in markdown for x in mystplain.find_myst(text)]

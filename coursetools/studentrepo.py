"""A self-contained repository for students: ``make student-repo [OUT=dist/student-repo]``.

    python -m coursetools.studentrepo [OUT] [--chapter 01_vanishing ...] [--url URL] [--ref REF]

The folder it writes is what an instructor pushes to a repository of their own, for Binder
(mybinder.org builds it as it is), for a JupyterHub (nbgitpuller) or to download:

- one folder per chapter with the student release of its notebooks (solutions and hidden tests
  removed by ``coursetools.assign.release``; a chapter without exercises is copied as it is),
  and ``notation.ipynb``;
- their markdown in plain form (:mod:`coursetools.mystplain`): equation numbers, "He et al.
  (2016a)" and page titles instead of MyST roles, which Jupyter and Colab show as raw text;
- their Colab guards pinned (:func:`coursetools.repo.pin_notebook`) to ``--url`` at ``--ref``:
  by default the course repository at the commit checked out here, so the checkers cannot
  change under the students during a term (push that commit first);
- ``gradflow/`` and a ``pyproject.toml`` that installs it (``pip install .``), without the
  maintainer tooling (``coursetools``, tests, the site, nbgrader);
- ``binder/`` (``requirements.txt`` with the CPU-only torch and ``-e .``, ``runtime.txt``),
  ``README.md`` and ``LICENSE``.

The release runs in a temporary copy of the course, so ``dist/`` (the gradebook) is not touched.
``tests/test_studentrepo.py`` builds it, installs ``binder/requirements.txt`` into a fresh
virtual environment and runs every notebook top to bottom there.
"""

import argparse
import json
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from . import assign, mystplain, repo

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- made by coursetools.studentrepo -->"
TOP_LEVEL = ("notation.ipynb",)  # pages outside the chapter folders that the chapters link to


class StudentRepoError(Exception):
    """Something the instructor must fix before the repository can be made."""


def _chapter_folders(root):
    return sorted(p.name for p in (Path(root) / "book").iterdir() if p.is_dir() and re.match(r"\d\d_", p.name)
                  and any(p.glob("*.ipynb")))


def _has_exercises(path):
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return any(c.get("metadata", {}).get("nbgrader", {}).get("solution") or
               c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in nb["cells"])


def _released(root, chapters, work):
    """{chapter: [released notebook paths]}: nbgrader's release, made in ``work`` (a copy of the course)."""
    course = Path(work) / "course"
    (course / "book").mkdir(parents=True)
    shutil.copy(Path(root) / "nbgrader_config.py", course)
    out = {}
    with_exercises = set(assign.chapters(root))
    for chapter in chapters:
        src = Path(root) / "book" / chapter
        if chapter in with_exercises:
            shutil.copytree(src, course / "book" / chapter,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build", "*.md"))
            assign.release(chapter, root=course, out=_Quiet())
            out[chapter] = assign.check_release(course, chapter)
        else:
            notebooks = sorted(src.glob("*.ipynb"))
            leaky = [nb.name for nb in notebooks if _has_exercises(nb)]
            if leaky:  # nbgrader metadata but not a chapter with exercises: never copy solutions
                raise StudentRepoError(f"{chapter}: {leaky} have nbgrader cells but the chapter is not releasable")
            out[chapter] = notebooks
    return out


class _Quiet:
    def write(self, text):
        pass

    def flush(self):
        pass


def _student_notebook(path, docname, book, url, ref):
    """The notebook at ``path`` as students get it: plain markdown, pinned guard, no outputs."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    unknown = mystplain.plain_notebook(nb, docname, book)
    if unknown:
        raise StudentRepoError(f"{docname}: the book does not know {', '.join(unknown)}")
    if not repo.pin_notebook(nb, url, ref):
        raise StudentRepoError(f"{docname}: the first code cell is not the Colab guard")
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def for_students(nb, path, root=ROOT):
    """A release transform: ``python -m coursetools.assign release --transform coursetools.studentrepo:for_students``.

    Turns the MyST of released notebook ``nb`` (a dict; ``path`` is ``dist/release/<chapter>/<name>.ipynb``)
    into plain markdown and pins its Colab guard to the commit checked out in ``root`` (the branch of
    ``_config.yml`` outside a git work tree). Changes the text of cells only; returns ``nb``.
    """
    path = Path(path)
    docname = f"book/{path.parent.name}/{path.stem}"
    unknown = mystplain.plain_notebook(nb, docname, mystplain.Book.load(root))
    if unknown:
        print(f"warning: {docname}: the book does not know {', '.join(unknown)}", file=sys.stderr)
    repo.pin_notebook(nb, repo.current_url(root), repo.head_commit(root) or repo.current_ref(root))
    return nb


def _pyproject(root):
    project = tomllib.loads((Path(root) / "pyproject.toml").read_text())["project"]
    deps = ", ".join(json.dumps(d) for d in project["dependencies"])
    return (f'# Installs gradflow, the helper package the notebooks import (made by coursetools.studentrepo).\n'
            f'[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "gradflow"\nversion = "{project["version"]}"\n'
            f'description = {json.dumps(project["description"])}\n'
            f'requires-python = "{project["requires-python"]}"\nlicense = "{project["license"]}"\n'
            f"dependencies = [{deps}]\n\n"
            f'[tool.setuptools.packages.find]\ninclude = ["gradflow*"]\n')


def _readme(title, chapters, url, ref, course_url):
    binder = "https://mybinder.org"
    if url != course_url:  # the students' own repository: a direct link
        binder = f"https://mybinder.org/v2/gh/{url.removeprefix('https://github.com/')}/{ref}"
    lines = [MARKER, f"# {title}: notebooks for students", "",
             f"The exercises of the course [{title}]({course_url}), one folder per chapter. Open a notebook,",
             "run it from the top, and write your answers in the cells that say `raise NotImplementedError()`;",
             "the cell below each exercise checks your answer and says what is wrong.", "",
             f"- **Binder**: open this repository on {binder} (nothing to install). Binder keeps",
             "  nothing: save your work with *File → Download* before you close the tab.",
             "- **Colab**: open a notebook from GitHub in https://colab.research.google.com; its first cell",
             f"  installs the course's helper package `gradflow` ({url} at `{ref}`).",
             "- **Your own Python 3.11+**: `pip install -r binder/requirements.txt jupyterlab` in this folder",
             "  (with a CPU-only PyTorch), then `jupyter lab`.", "", "Chapters:", ""]
    lines += [f"- `{c}/`: " + ", ".join(f"`{n}`" for n in names) for c, names in chapters.items()]
    lines += ["", "Text and figures: CC BY 4.0; code: MIT (see `LICENSE`).", ""]
    return "\n".join(lines)


def build(out, root=ROOT, chapters=None, url=None, ref=None, log=print):
    """Write the student repository to ``out``; returns {chapter: [notebook names]}."""
    root, out = Path(root), Path(out)
    if out.exists() and any(out.iterdir()):
        readme = out / "README.md"
        if not (readme.exists() and readme.read_text(encoding="utf-8").startswith(MARKER)):
            raise StudentRepoError(f"{out} exists and was not made by this command: not overwriting it")
        shutil.rmtree(out)
    names = chapters or _chapter_folders(root)
    unknown = sorted(set(names) - set(_chapter_folders(root)))
    if unknown:
        raise StudentRepoError(f"no chapter {unknown}; chapters: {', '.join(_chapter_folders(root))}")
    course_url = repo.current_url(root)
    url = url or course_url
    if ref is None:
        if url != course_url:
            raise StudentRepoError("with --url, give --ref too (the branch, tag or commit to install gradflow from)")
        ref = repo.head_commit(root)
        if ref is None:
            raise StudentRepoError(f"{root} is not a git work tree: give --ref (a pushed tag or commit)")
        changed = repo.uncommitted(root, ("gradflow",))
        if changed:
            log(f"warning: gradflow has uncommitted changes ({', '.join(changed)}): the Colab guards install "
                f"commit {ref[:12]}, without them; Binder and pip use the copy in this folder")
    if not repo.URL_RE.match(url) or not repo.REF_RE.match(ref):
        raise StudentRepoError(f"expected https://github.com/<owner>/<repo> and a branch, tag or commit, "
                               f"got {url!r} and {ref!r}")
    book = mystplain.Book.load(root)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    with tempfile.TemporaryDirectory(prefix="studentrepo-") as work:
        for chapter, notebooks in _released(root, names, work).items():
            (out / chapter).mkdir()
            for nb in notebooks:
                text = _student_notebook(nb, f"book/{chapter}/{nb.stem}", book, url, ref)
                (out / chapter / nb.name).write_text(text, encoding="utf-8")
            made[chapter] = [nb.name for nb in notebooks]
    for name in TOP_LEVEL:
        src = root / "book" / name
        if src.exists() and not _has_exercises(src):
            (out / name).write_text(_student_notebook(src, f"book/{src.stem}", book, url, ref), encoding="utf-8")
    shutil.copytree(root / "gradflow", out / "gradflow", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "pyproject.toml").write_text(_pyproject(root))
    shutil.copytree(root / "binder", out / "binder")
    shutil.copy(root / "LICENSE", out / "LICENSE")
    title = re.search(r"^title: (.+)$", (root / "_config.yml").read_text(), flags=re.M).group(1).strip()
    (out / "README.md").write_text(_readme(title, made, url, ref, course_url), encoding="utf-8")
    log(f"student repository in {out}: {sum(map(len, made.values()))} notebooks in {len(made)} chapters, "
        f"gradflow installed from {url} at {ref}")
    return made


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m coursetools.studentrepo",
                                     description="Make a self-contained repository of the student release.")
    parser.add_argument("out", nargs="?", default=str(ROOT / "dist" / "student-repo"),
                        help="the folder to write (default dist/student-repo)")
    parser.add_argument("--chapter", action="append", dest="chapters", help="only this chapter (repeatable)")
    parser.add_argument("--url", help="the repository the Colab guards install gradflow from "
                                      "(default: the course's repository.url)")
    parser.add_argument("--ref", help="its branch, tag or commit (default: the commit checked out here)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        build(args.out, chapters=args.chapters, url=args.url, ref=args.ref)
    except (StudentRepoError, assign.AssignError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

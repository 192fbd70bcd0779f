"""The book's structure: every notebook is in the toc, starts with an H1, has no stored
outputs and a kernelspec; the Colab guard points at the repository of _config.yml."""

import json
import re
from pathlib import Path

import pytest
import yaml

from coursetools import repo

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def toc_files():
    files = [TOC["root"]]
    for part in TOC["parts"]:
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files.extend(s["file"] for s in chapter.get("sections", []))
    return files


def test_toc_entries_exist():
    for f in toc_files():
        matches = [p for p in ROOT.glob(f + ".*") if p.suffix in (".md", ".ipynb")]
        assert matches, f"_toc.yml lists {f}, which has no .md or .ipynb file"


def test_every_page_is_in_the_toc():
    listed = set(toc_files())
    for p in sorted(BOOK.rglob("*.md")) + NOTEBOOKS:
        rel = p.relative_to(ROOT).with_suffix("").as_posix()
        assert rel in listed, f"{rel} is not in _toc.yml (only_build_toc_files would skip it)"


def test_chapter_folders_are_in_toc_order():
    chapters = [f for f in toc_files() if re.match(r"book/\d\d_", f)]
    folders = [f.split("/")[1] for f in chapters]
    assert folders == sorted(folders), f"chapters out of folder order: {folders}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", "kernelspec python3 missing"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# "), \
        "the first cell must be markdown starting with an H1"
    for cell in nb["cells"]:
        assert "id" in cell, "cell ids must be kept (nbstripout --keep-id)"
        if cell["cell_type"] == "code":
            assert not cell["outputs"], f"stored outputs in cell {cell['id']}: run nbstripout --keep-id"
            assert cell["execution_count"] is None, f"execution count stored in cell {cell['id']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_colab_guard_points_at_the_repository(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    guard = code[0]
    url, ref = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert guard.startswith("try:\n    import gradflow\nexcept ImportError:"), "first code cell: the Colab guard"
    # the same repository and branch as the launch buttons (coursetools.repo; make fork sets both)
    assert (guard + "\n").startswith(repo.guard(url, ref)), f"the Colab guard must install gradflow from {url} at {ref}"


def test_single_source_of_the_repository_url():
    url = CONFIG["repository"]["url"]
    assert url.startswith("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    assert "make fork" in readme


def test_workflow_runs_make_test_and_deploys_pages():
    wf = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job.get("steps", [])]
    assert any(s.get("run") == "make test" for s in steps)
    assert any("deploy-pages" in s.get("uses", "") for s in steps)
    assert any(s.get("with", {}).get("path") == "_build/html" for s in steps)
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"]


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and line != "--extra-index-url https://download.pytorch.org/whl/cpu":
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^\s;]*(; .+)?", line), f"not an exact pin: {line}"
    assert "torch==2.13.0+cpu;" in (ROOT / "requirements.txt").read_text()  # tests/test_installs.py resolves it
    assert "jupyter-book==1.0.4.post1" in (ROOT / "requirements.txt").read_text()


def test_binder_uses_cpu_torch():
    req = (ROOT / "binder/requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in req and "+cpu" in req
    assert (ROOT / "binder/runtime.txt").read_text().strip().startswith("python-3.11")


SEED_LINE = re.compile(r'^SEED = int\(os\.environ\.get\("GRADFLOW_SEED", "0"\)\)', re.MULTILINE)
LITERAL_SEED = re.compile(r"\bseed\s*=\s*\d|manual_seed\(\s*\d|default_rng\(\s*\d|RandomState\(\s*\d|\bseed\(\s*\d")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_seed_derives_from_SEED(path):
    """Issue 12: one visible SEED line in the set-up cell, read from GRADFLOW_SEED (make seeds sets it), and
    no literal seed anywhere else: every seed is SEED, SEED + 1, ..., so a reader's seed changes every draw."""
    nb = json.loads(path.read_text())
    code = [(c["id"], "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
    setup = [cell_id for cell_id, src in code if SEED_LINE.search(src)]
    assert len(setup) == 1, ('one set-up cell must hold the line SEED = int(os.environ.get("GRADFLOW_SEED", "0")); '
                             f"found it in {setup or 'none'}")
    assert code.index(next(c for c in code if c[0] == setup[0])) <= 2, "SEED is set in the set-up cell, near the top"
    literal = [(cell_id, m.group(0)) for cell_id, src in code for m in LITERAL_SEED.finditer(src)]
    assert not literal, f"literal seeds (derive them from SEED instead): {literal}"

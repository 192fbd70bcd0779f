"""The site extension (duplicate scripts) and `make fork` (repository URL in one place)."""

import json
import shutil
from pathlib import Path

import pytest
from sphinx.builders.html._assets import _JavaScript

from coursetools import repo, sphinxext

ROOT = Path(__file__).resolve().parents[1]


def test_dedupe_scripts_keeps_first_of_identical_inline_scripts():
    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript(None, body=body), _JavaScript("a.js"), _JavaScript("", body=body),
               _JavaScript("a.js", **{"async": "async"})]
    ctx = {"script_files": scripts}
    sphinxext.dedupe_scripts(None, "p", "page.html", ctx, None)
    assert ctx["script_files"] is scripts  # edited in place
    assert [str(s.filename) for s in scripts] == ["None", "a.js", "a.js"]


def test_set_url_rewrites_config_and_notebooks(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "book").mkdir()
    old = repo.current_url(ROOT)
    nb = {"cells": [{"cell_type": "code", "source": [f'%pip install "gradflow @ git+{old}"\n'],
                     "metadata": {}, "outputs": [], "execution_count": None, "id": "a"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "book" / "x.ipynb").write_text(json.dumps(nb))
    changed = repo.set_url("https://github.com/someone/fork", root=tmp_path)
    assert len(changed) == 2
    assert repo.current_url(tmp_path) == "https://github.com/someone/fork"
    assert "someone/fork" in (tmp_path / "book" / "x.ipynb").read_text()
    with pytest.raises(ValueError, match="expected https://github.com/<owner>/<repo>"):
        repo.set_url("not a url", root=tmp_path)

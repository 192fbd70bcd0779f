"""The Colab guard installs the gradflow that matches its notebook (issue 17 item 3).

Book notebooks install from ``repository.url`` at ``repository.branch`` (what the launch buttons
open); ``make fork`` changes both, with the config; a student copy pins a commit.
"""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from coursetools import repo

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
SHA = "0123456789abcdef0123456789abcdef01234567"


def _nb(path):
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_guard_installs_the_configured_repository_at_the_configured_branch(path):
    assert repo.read_guard(_nb(path)) == (CONFIG["repository"]["url"], CONFIG["repository"]["branch"])


def test_guard_lines_fit_the_page_column_even_with_a_commit_pin():
    for ref in (CONFIG["repository"]["branch"], SHA):
        for line in repo.guard(CONFIG["repository"]["url"], ref).splitlines():
            assert len(line) <= 79, f"{len(line)} characters: {line}"


def test_ipython_puts_repo_and_ref_into_the_pip_line(tmp_path):
    """Run the guard in IPython with gradflow missing; a stand-in %pip records what it is given."""
    guard = repo.guard("https://github.com/someone/fork", SHA)
    script = textwrap.dedent(f"""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR
        ip = InteractiveShell.instance()
        real = ip.find_line_magic("pip")
        assert real is not None and not getattr(real, MAGIC_NO_VAR_EXPAND_ATTR, False)
        seen = []
        ip.register_magic_function(seen.append, "line", "pip")
        sys.modules["gradflow"] = None  # import gradflow fails, as on Colab
        result = ip.run_cell({guard!r})
        assert result.success, result
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([f'install -q "gradflow @ git+https://github.com/someone/fork@{SHA}"'])


def _book_copy(tmp_path, name="book/02_residual/signal.ipynb"):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    dest = tmp_path / name
    dest.parent.mkdir(parents=True)
    shutil.copy(ROOT / name, dest)
    return dest


def test_make_fork_sets_url_and_branch_in_config_and_guards_only(tmp_path):
    nb_path = _book_copy(tmp_path)
    before = _nb(nb_path)
    changed = repo.set_url("https://github.com/someone/fork", root=tmp_path, ref="spring-2027")
    assert sorted(p.name for p in changed) == ["_config.yml", "signal.ipynb"]
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert config["repository"]["url"] == "https://github.com/someone/fork"
    assert config["repository"]["branch"] == "spring-2027"
    after = _nb(nb_path)
    assert repo.read_guard(after) == ("https://github.com/someone/fork", "spring-2027")
    diff = [(a, b) for a, b in zip(before["cells"], after["cells"], strict=True) if a != b]
    assert len(diff) == 1  # only the guard cell, and in it only the two lines
    old, new = ("".join(c["source"]).splitlines() for c in diff[0])
    assert [x for x in zip(old, new, strict=True) if x[0] != x[1]] == [
        (f'    repo = "{CONFIG["repository"]["url"]}"', '    repo = "https://github.com/someone/fork"'),
        (f'    ref = "{CONFIG["repository"]["branch"]}"  # a branch, tag or commit',
         '    ref = "spring-2027"  # a branch, tag or commit')]
    # the notebook keeps nbstripout's layout: no diff beyond those lines
    assert nb_path.read_text() == repo._dump(after)
    # without --ref the branch stays
    repo.set_url("https://github.com/other/fork", root=tmp_path)
    assert repo.read_guard(_nb(nb_path)) == ("https://github.com/other/fork", "spring-2027")


def test_make_fork_refuses_bad_urls_and_refs(tmp_path, capsys):
    _book_copy(tmp_path)
    with pytest.raises(ValueError, match="expected https://github.com/<owner>/<repo>"):
        repo.set_url("not a url", root=tmp_path)
    with pytest.raises(ValueError, match="branch, tag or commit"):
        repo.set_url("https://github.com/a/b", root=tmp_path, ref="x y")
    assert repo.main(["https://gitlab.com/a/b"]) == 2
    assert "expected https://github.com" in capsys.readouterr().err


def test_pin_notebook_pins_a_commit_and_upgrades_an_old_guard():
    old_guard = ("try:\n    import gradflow\nexcept ImportError:  # on Colab: install the course's helper package\n"
                 '    %pip install -q "gradflow @ git+https://github.com/a/b"\nimport torch\n')
    nb = {"cells": [{"cell_type": "markdown", "source": ["# T\n"]},
                    {"cell_type": "code", "source": old_guard.splitlines(keepends=True)}]}
    assert repo.pin_notebook(nb, ref=SHA)
    src = "".join(nb["cells"][1]["source"])
    assert src == repo.guard("https://github.com/a/b", SHA) + "import torch\n"
    assert repo.read_guard(nb) == ("https://github.com/a/b", SHA)
    assert not repo.pin_notebook({"cells": [{"cell_type": "code", "source": ["import torch\n"]}]}, ref=SHA)

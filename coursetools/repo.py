"""Where the book and its ``gradflow`` come from: ``make fork REPO=https://github.com/<you>/<repo> [REF=...]``.

The repository URL lives in ``_config.yml`` (``repository.url``, with ``repository.branch``):
the Binder, Colab and "Live code" launch buttons read them. Each notebook's first code cell,
the Colab guard, installs the ``gradflow`` that matches the notebook when it is missing::

    try:
        import gradflow
    except ImportError:  # Colab: install the gradflow this notebook was made for
        repo = "https://github.com/gradflow-course/why-residual-networks-train"
        ref = "main"  # a branch, tag or commit
        %pip install -q "gradflow @ git+{repo}@{ref}"

(IPython puts the values of ``repo`` and ``ref`` into the ``%pip`` line.) In the book's own
notebooks ``ref`` is ``repository.branch``, the same branch the launch buttons open, so a
notebook and the package it installs always come from the same branch; this command rewrites
the config and every guard together, and the structure tests check that they agree. A copy
for students pins ``ref`` to a commit (:func:`pin_notebook`), so that their checkers cannot
change under them during a term.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")  # a branch, a tag or a commit
GUARD_HEAD = "try:\n    import gradflow\nexcept ImportError:"
GUARD = (GUARD_HEAD + "  # Colab: install the gradflow this notebook was made for\n"
         '    repo = "{url}"\n'
         '    ref = "{ref}"  # a branch, tag or commit\n'
         '    %pip install -q "gradflow @ git+{{repo}}@{{ref}}"\n')
_REPO_LINE = re.compile(r'^(    repo = )"([^"]*)"', flags=re.M)
_REF_LINE = re.compile(r'^(    ref = )"([^"]*)"', flags=re.M)


def current_url(root=ROOT):
    """The ``repository.url`` of ``_config.yml``."""
    return _config_value(root, "url")


def current_ref(root=ROOT):
    """The ``repository.branch`` of ``_config.yml`` (what the launch buttons open)."""
    return _config_value(root, "branch")


def _config_value(root, key):
    m = re.search(rf"^  {key}: (\S+)", (Path(root) / "_config.yml").read_text(), flags=re.M)
    return m.group(1)


def guard(url, ref):
    """The source of a Colab guard that installs ``gradflow`` from ``url`` at ``ref``."""
    return GUARD.format(url=url, ref=ref)


def _guard_cell(nb):
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if not code or not "".join(code[0]["source"]).startswith(GUARD_HEAD):
        return None
    return code[0]


def read_guard(nb):
    """(url, ref) installed by the notebook's Colab guard, or None if its first code cell is none."""
    cell = _guard_cell(nb)
    if cell is None:
        return None
    src = "".join(cell["source"])
    url, ref = _REPO_LINE.search(src), _REF_LINE.search(src)
    return (url.group(2) if url else None, ref.group(2) if ref else None)


def pin_notebook(nb, url=None, ref=None):
    """Set the guard of notebook ``nb`` (a dict, changed in place) to install from ``url`` at ``ref``.

    Only the ``repo = ...`` and ``ref = ...`` lines of the first code cell change (either may be
    None: kept). An old-style guard (``%pip install -q "gradflow @ git+URL"``, before refs) is
    replaced by the current one. Returns True if the notebook has a guard.
    """
    cell = _guard_cell(nb)
    if cell is None:
        return False
    src = "".join(cell["source"])
    old = re.match(re.escape(GUARD_HEAD) + r'[^\n]*\n    %pip install -q "gradflow @ git\+(\S+?)"(\n|$)', src)
    if old:  # the guard before refs: one %pip line with the URL
        rest = src[old.end():]
        src = guard(url or old.group(1), ref or current_ref()) + rest
        if not rest:
            src = src[:-1]  # the guard was the whole cell: no newline at the end, as before
    else:
        for value, line in ((url, _REPO_LINE), (ref, _REF_LINE)):
            if value is not None:
                src, n = line.subn(lambda m, v=value: f'{m.group(1)}"{v}"', src, count=1)
                if n != 1:
                    raise ValueError(f"the Colab guard has no {line.pattern!r} line:\n{src}")
    cell["source"] = src.splitlines(keepends=True)
    return True


def _dump(nb):
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def set_url(new, root=ROOT, ref=None):
    """Point ``_config.yml`` and every notebook at ``new`` (and branch ``ref``); returns the files changed."""
    if not URL_RE.match(new):
        raise ValueError(f"expected https://github.com/<owner>/<repo>, got {new!r}")
    if ref is not None and not REF_RE.match(ref):
        raise ValueError(f"expected a branch, tag or commit, got {ref!r}")
    root = Path(root)
    old = current_url(root)
    ref = ref or current_ref(root)
    changed = []
    config = root / "_config.yml"
    text = config.read_text()
    new_text = text.replace(old, new)
    new_text = re.sub(r"^(  branch: )\S+", lambda m: m.group(1) + ref, new_text, count=1, flags=re.M)
    if new_text != text:
        config.write_text(new_text)
        changed.append(config)
    for path in sorted((root / "book").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        text = path.read_text()
        nb = json.loads(text)
        for cell in nb["cells"]:  # links to the repository in the text follow it too
            src = "".join(cell["source"])
            if old in src:
                cell["source"] = src.replace(old, new).splitlines(keepends=True)
        pin_notebook(nb, new, ref)
        if _dump(nb) != text:
            path.write_text(_dump(nb))
            changed.append(path)
    return changed


def head_commit(root=ROOT):
    """The full hash of the commit checked out in ``root``, or None outside a git work tree."""
    run = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return run.stdout.strip() if run.returncode == 0 else None


def uncommitted(root=ROOT, paths=("gradflow", "book")):
    """Files under ``paths`` that differ from the checked-out commit (what a commit pin would miss)."""
    run = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *paths],
                         capture_output=True, text=True)
    return [line[3:] for line in run.stdout.splitlines()] if run.returncode == 0 else []


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m coursetools.repo",
                                     description="Point the launch buttons and the Colab guards at a repository.")
    parser.add_argument("url", metavar="REPO", help="https://github.com/<owner>/<repo>")
    parser.add_argument("--ref", help="the branch or tag the launch buttons open and the guards install "
                                      "(default: keep repository.branch of _config.yml)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        changed = set_url(args.url, ref=args.ref)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(ROOT)}")
    print(f"commit and push: the launch buttons and the Colab guards then use {args.url} at "
          f"{args.ref or current_ref()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

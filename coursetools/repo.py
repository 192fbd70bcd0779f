"""Point the book at a fork: ``python -m coursetools.repo https://github.com/<you>/<repo>``.

The repository URL lives in ``_config.yml`` (``repository.url``: the launch buttons read it).
Each chapter's Colab guard installs ``gradflow`` from the same URL; this command rewrites the
config and every guard together, and the structure tests check they agree.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def current_url(root=ROOT):
    """The ``repository.url`` of ``_config.yml``."""
    m = re.search(r"^  url: (\S+)", (root / "_config.yml").read_text(), flags=re.M)
    return m.group(1)


def set_url(new, root=ROOT):
    """Replace the repository URL in ``_config.yml`` and in every notebook; returns files changed."""
    if not URL_RE.match(new):
        raise ValueError(f"expected https://github.com/<owner>/<repo>, got {new!r}")
    old = current_url(root)
    changed = []
    for path in [root / "_config.yml", *sorted((root / "book").rglob("*.ipynb"))]:
        text = path.read_text()
        if old in text:
            if path.suffix == ".ipynb":  # keep the notebook's JSON layout
                nb = json.loads(text)
                for cell in nb["cells"]:
                    src = "".join(cell["source"]).replace(old, new)
                    cell["source"] = src.splitlines(keepends=True)
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            else:
                path.write_text(text.replace(old, new))
            changed.append(path)
    return changed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: make fork REPO=https://github.com/<owner>/<repo>", file=sys.stderr)
        return 2
    try:
        changed = set_url(argv[0])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

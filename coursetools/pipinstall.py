"""``pip install -r FILE`` that never spends minutes on a package index this machine cannot reach.

    python -m coursetools.pipinstall [pip install options] -r requirements.txt

``requirements.txt`` and ``binder/requirements.txt`` name PyTorch's CPU wheel index
(``--extra-index-url https://download.pytorch.org/whl/cpu``), where the CPU build of torch
lives. pip asks every index about every package and retries an unreachable one five times
each time (about 12 s a package: half an hour for the course's 130 packages). So this probes
each extra index of the file once, with a short timeout; if one does not answer, it installs
from a copy of the file without that line, and says so. A pin such as ``torch==2.13.0+cpu``
is then met only by a wheel pip finds elsewhere (a local wheel mirror or pip's cache); if
there is none, pip stops with "No matching distribution found": never a silent CUDA build.

Standard library only: it runs in a fresh virtual environment before anything is installed.
"""

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

INDEX_LINE = re.compile(r"^\s*--extra-index-url[\s=]+(\S+)\s*(#.*)?$")
TIMEOUT = 5  # seconds: an index that answers at all answers within this


def extra_indexes(path):
    """The ``--extra-index-url`` URLs named in requirements file ``path`` (not in files it includes)."""
    found = []
    for line in Path(path).read_text().splitlines():
        m = INDEX_LINE.match(line)
        if m:
            found.append(m.group(1))
    return found


def reachable(url, timeout=TIMEOUT):
    """True if the host of ``url`` answers HTTP at all (any status), through the environment's proxy."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:  # an answer, even 403 or 404: the host is there
        return True
    except (OSError, ValueError):  # DNS failure, refused, timed out, no route
        return False


def without_indexes(path, urls, dest):
    """Write ``path`` to ``dest`` without the ``--extra-index-url`` lines of ``urls``; returns ``dest``."""
    kept = [line for line in Path(path).read_text().splitlines()
            if not ((m := INDEX_LINE.match(line)) and m.group(1) in urls)]
    Path(dest).write_text("\n".join(kept) + "\n")
    return Path(dest)


def _requirement_files(args):
    """Positions in ``args`` of the files given with ``-r FILE``, ``-rFILE`` or ``--requirement[=]FILE``."""
    spots = []
    for i, arg in enumerate(args):
        if arg in ("-r", "--requirement") and i + 1 < len(args):
            spots.append((i + 1, "", args[i + 1]))
        elif arg.startswith("--requirement="):
            spots.append((i, "--requirement=", arg.split("=", 1)[1]))
        elif arg.startswith("-r") and len(arg) > 2:
            spots.append((i, "-r", arg[2:]))
    return spots


def plan(args, probe=reachable, out=sys.stderr):
    """(pip arguments, copies made): ``args`` with unreachable extra indexes left out of the files.

    A copy is written beside its original (so that a relative ``-r`` inside it still resolves);
    the caller deletes the copies after pip has run.
    """
    args, copies, checked = list(args), [], {}
    for pos, prefix, name in _requirement_files(args):
        dead = []
        for url in extra_indexes(name):
            if url not in checked:
                checked[url] = probe(url)
            if not checked[url]:
                dead.append(url)
        if dead:
            copy = Path(name).resolve().parent / f".{Path(name).name}.offline-{os.getpid()}"
            if copy not in copies:
                copies.append(without_indexes(name, set(dead), copy))
            args[pos] = prefix + str(copy)
            for url in dead:
                if checked[url] is False:  # say it once
                    checked[url] = None
                    print(f"pipinstall: {url} does not answer; installing {name} without it "
                          "(its packages must then come from a local wheel mirror or pip's cache)", file=out)
    return args, copies


def main(argv=None):
    args, copies = plan(sys.argv[1:] if argv is None else argv)
    try:
        return subprocess.call([sys.executable, "-m", "pip", "install", *args])
    finally:
        for copy in copies:
            copy.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())

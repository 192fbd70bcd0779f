"""Re-execute the notebooks when the code they import changes (a Sphinx extension, in ``_config.yml``).

Sphinx re-reads only the sources that changed since the last build, and myst-nb executes a
notebook only when Sphinx reads it. So after an edit to ``gradflow`` a second ``make book``
executed nothing and the site kept outputs that the current code would not produce.

This extension adds the config value ``coursetools_code_fingerprint``, a hash of

- every file of the packages in ``coursetools_fingerprint_packages`` (``gradflow`` and
  ``coursetools`` by default: the chapters import one, the instructors' page the other),
- the name and version of every installed distribution (a new torch or numpy), and the Python version,

computed when the build starts. It is registered as an ``env`` value, so when it differs from the
one of the last build Sphinx reads (and myst-nb executes) every page again, and says why:
``[config changed ('coursetools_code_fingerprint')]``. Nothing else changes: a build with the same
code re-executes nothing, as before.

``coursetools_doc_dependencies`` maps a page to glob patterns of files its code cells read
(``{"book/instructors": ["book/*/*.ipynb"]}``: the points-and-time table reads the chapters); the
page is read again when one of them changes.
"""

import hashlib
import importlib.metadata
import importlib.util
import platform
from pathlib import Path

DEFAULT_PACKAGES = ("gradflow", "coursetools")


def _package_dirs(name):
    spec = importlib.util.find_spec(name)  # finds a top-level package without importing it
    if spec is None:
        raise ValueError(f"coursetools_fingerprint_packages: no package {name!r} is importable")
    return [Path(p) for p in (spec.submodule_search_locations or [])] or [Path(spec.origin)]


def _files(path):
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def fingerprint(packages=DEFAULT_PACKAGES):
    """A hex digest of the packages' files, the installed distributions and the Python version."""
    h = hashlib.sha256()
    for name in packages:
        for base in _package_dirs(name):
            for f in _files(base):
                h.update(f"{name}/{f.relative_to(base.parent).as_posix()}\0".encode())
                h.update(f.read_bytes())
                h.update(b"\0")
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                    if d.metadata["Name"]})
    h.update("\n".join(dists).encode())
    h.update(platform.python_version().encode())
    return h.hexdigest()


def set_fingerprint(app, config):
    """``config-inited``: compute the fingerprint of the code the pages run."""
    config.coursetools_code_fingerprint = fingerprint(config.coursetools_fingerprint_packages)


def note_dependencies(app, doctree):
    """``doctree-read``: a page listed in ``coursetools_doc_dependencies`` depends on those files."""
    docname = app.env.docname
    patterns = app.config.coursetools_doc_dependencies.get(docname, ())
    for pattern in patterns:
        for path in sorted(Path(app.srcdir).glob(pattern)):
            app.env.note_dependency(str(path))


def setup(app):
    app.add_config_value("coursetools_fingerprint_packages", list(DEFAULT_PACKAGES), "")
    app.add_config_value("coursetools_doc_dependencies", {}, "env")
    app.add_config_value("coursetools_code_fingerprint", "", "env")
    app.connect("config-inited", set_fingerprint)
    app.connect("doctree-read", note_dependencies)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

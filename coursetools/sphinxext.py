"""A tiny Sphinx extension for the book's site (enabled in ``_config.yml``).

jupyter-book 1.x registers sphinx-thebe's and sphinx-togglebutton's inline configuration
scripts twice on every page. Loading the same ``const THEBE_JS_URL = ...`` twice is a
``SyntaxError`` in the browser ("Identifier 'THEBE_JS_URL' has already been declared").
This extension drops exact duplicates from each page's script list, keeping the first.

It also puts ``coursetools/templates`` first on the template path, where an override of the
theme's asset macros leaves out ``fontawesome.js`` (1.5 MB, only needed for custom icons).
"""

from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def _script_key(script):
    # an inline script is registered once with filename None and once with "": same script
    attributes = getattr(script, "attributes", {}) or {}
    return str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def dedupe_scripts(app, pagename, templatename, context, doctree):
    """``html-page-context`` handler: remove repeated identical ``<script>`` entries."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: later handlers may still add to this list


def drop_widget_state(app, pagename, templatename, context, doctree):
    """``html-page-context`` handler: no saved ipywidgets state in pages without widget JS.

    myst-nb embeds the notebook's widget state (about 20 KB per explorer) even when
    ``nb_ipywidgets_js`` is empty, where nothing can read it: the explorers show their
    static HTML instead. Runs before myst-nb's own handler adds the page's scripts.
    """
    if getattr(app.config, "nb_ipywidgets_js", None) or app.env is None:
        return
    data = getattr(app.env, "nb_metadata", {}).get(pagename, {})
    data.get("js_files", {}).pop("ipywidgets_state", None)


def shrink_images(app, exception):
    """``build-finished`` handler: store the notebooks' PNG figures with a 256-colour palette.

    Matplotlib writes full-colour PNGs; the book's line plots use a handful of colours plus
    anti-aliasing, so a 256-colour palette looks the same and is about three times smaller.
    A figure is replaced only when the palette version is smaller.
    """
    if exception is not None or app.builder.format != "html":
        return
    from PIL import Image

    for path in Path(app.outdir, "_images").glob("*.png"):
        with Image.open(path) as img:
            if img.mode == "P":
                continue
            small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        tmp = path.with_suffix(".tmp.png")
        small.save(tmp, format="png", optimize=True)
        if tmp.stat().st_size < path.stat().st_size:
            tmp.replace(path)
        else:
            tmp.unlink()


def add_templates(app, config):
    """``config-inited`` handler: our templates take precedence over the theme's."""
    config.templates_path = [str(TEMPLATES), *config.templates_path]


def setup(app):
    app.connect("config-inited", add_templates)
    app.connect("build-finished", shrink_images)
    # early: a handler that returns a template name stops later ones (emit_firstresult)
    app.connect("html-page-context", dedupe_scripts, priority=100)
    app.connect("html-page-context", drop_widget_state, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

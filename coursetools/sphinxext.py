"""The book's Sphinx extension (enabled in ``_config.yml``): small, documented fixes to the site.

Each fix is guarded by a browser or build test in ``tests/test_site*.py``. In order:

- **Duplicate scripts.** jupyter-book 1.x registers sphinx-thebe's and sphinx-togglebutton's
  inline configuration scripts twice on every page; loading ``const THEBE_JS_URL = ...`` twice is a
  ``SyntaxError``. :func:`dedupe_scripts` keeps the first of each.
- **No fontawesome.js.** ``templates/static/webpack-macros.html`` leaves out the theme's 1.5 MB
  ``fontawesome.js`` (icons come from its CSS and webfonts).
- **Navigation on phones, tablets and desktop** (pydata-sphinx-theme issue 2451). Since 0.17 the
  theme renders a second, hidden ``.primary-toggle`` (and ``.secondary-toggle``) in its own
  header bar, and both themes' scripts bind ``document.querySelector('.primary-toggle')``, the
  hidden one: the visible ☰ and "On this page" buttons did nothing. sphinx-book-theme empties
  every header item except ``navbar_persistent``, which pydata-sphinx-theme then fills with a
  second search field. :func:`configure` sets ``navbar_persistent = []``: the header bar is not
  rendered, the only toggles are the visible ones, and the duplicate search field is gone.
- **MathJax out of the tab order** (MathJax's own ``menuOptions.settings.inTabOrder``): formulas
  stay readable by screen readers through MathJax's assistive MathML.
- **A favicon**, and ``static/site.css`` / ``static/site.js`` (focus rings, equations that fit a
  phone, code that fits the column and wraps in print, Live Code's offline message, plain-text
  formulas in search snippets).
- **Solution cells** (nbgrader ``solution`` metadata): their toggle says "Show solution" /
  "Hide solution" with a name that says which exercise; nbgrader's ``### BEGIN/END SOLUTION``
  markers and any ``### BEGIN/END HIDDEN TESTS`` block are dropped from the code shown.
- **Nothing a reader can fetch holds hidden tests**: :func:`scrub_sources` removes the
  hidden-test blocks from every notebook copied into the site (``_sources``, downloads).
- **Launch buttons only on notebooks**: Binder and Colab cannot open a MyST ``.md`` page.
- **Accessibility of theme markup**: the sidebar's expand chevrons get names, the bibliography
  uses list items instead of the deprecated ``doc-biblioentry`` role, empty table header cells
  become data cells, the sidebar's title link sits in a navigation landmark.
- **Lighter pages**: no dead ipywidgets state; figures stored as 256-colour PNGs.
- **Figures can be enlarged**: each figure links to its full-size image.
"""

import json
import posixpath
import re
from html import escape
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.osutil import relative_uri

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CSS_FILE, JS_FILE = "gradflow-site.css", "gradflow-site.js"

SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)
HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*(\n|\Z)",
                          re.M | re.S)


# -- configuration --------------------------------------------------------------------------------
def configure(app, config):
    """``config-inited``: our templates first, our static files, theme and MathJax options."""
    config.templates_path = [str(TEMPLATES), *config.templates_path]
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    if not config.html_favicon:
        config.html_favicon = str(STATIC / "favicon.svg")
    options = config.html_theme_options
    if options is None:
        options = config.html_theme_options = {}
    # one set of sidebar toggles, no second header bar with a second search field (see above)
    options.setdefault("navbar_persistent", [])
    mathjax = dict(config.mathjax3_config or {})
    settings = mathjax.setdefault("options", {}).setdefault("menuOptions", {}).setdefault("settings", {})
    settings.setdefault("inTabOrder", False)
    config.mathjax3_config = mathjax


# -- page context ---------------------------------------------------------------------------------
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


def launch_buttons_only_on_notebooks(app, pagename, templatename, context, doctree):
    """``html-page-context`` (after sphinx-book-theme's): no Binder/Colab/Live Code on ``.md`` pages.

    sphinx-book-theme offers them on every page with a kernelspec, MyST markdown pages included,
    but Binder's and Colab's links open the ``.md`` file, which neither can run.
    """
    if context.get("page_source_suffix", "") == ".ipynb":
        return
    buttons = context.get("header_buttons")
    if buttons:
        buttons[:] = [b for b in buttons if b.get("label") != "launch-buttons"]
    context["use_thebe"] = False


def _name_sidebar_toggles(html):
    """Give each sidebar expand/collapse ``<summary>`` an accessible name (axe ``summary-name``)."""

    def name(match):
        title = re.sub(r"<[^>]+>", "", match.group("title"))
        title = re.sub(r"\s+", " ", title).strip()
        label = escape(f"Sections of {title}", quote=True)
        return f'{match.group("link")}<details{match.group("attrs")}><summary aria-label="{label}">'

    return re.sub(r'(?P<link><a class="[^"]*reference[^"]*" href="[^"]*">(?P<title>(?:(?!</a>).)*)</a>)'
                  r"<details(?P<attrs>[^>]*)><summary>", name, str(html), flags=re.S)


def accessible_markup(app, pagename, templatename, context, doctree):
    """``html-page-context`` (late): fix theme and docutils markup that axe-core flags."""
    body = context.get("body")
    if body:
        # docutils writes the bibliography as role="list" > role="doc-biblioentry": a list must hold
        # list items (axe aria-required-children, critical), and doc-biblioentry is deprecated.
        body = body.replace('role="doc-biblioentry"', 'role="listitem"')
        # an empty header cell is not a header (axe empty-table-header)
        body = re.sub(r'<th class="head">\s*(<p>\s*</p>)?\s*</th>', '<td class="head"></td>', body)
        context["body"] = body
    toctree = context.get("generate_toctree_html")
    if callable(toctree) and not getattr(toctree, "_gf_named", False):
        from markupsafe import Markup

        def named(*args, **kwargs):
            return Markup(_name_sidebar_toggles(toctree(*args, **kwargs)))

        named._gf_named = True
        context["generate_toctree_html"] = named


# -- doctree --------------------------------------------------------------------------------------
def _exercise_name(node):
    """'exercise 3' from the nearest paragraph before the cell that starts "Exercise 3" (the
    chapters' "**Exercise 3 (2 points): ...**"), else from the enclosing section "Exercise 3: ...",
    else that section's title."""
    here = node
    while here.parent is not None and not isinstance(here, nodes.section):
        siblings = here.parent.children
        for before in reversed(siblings[:siblings.index(here)]):
            if isinstance(before, nodes.section):
                break
            if isinstance(before, nodes.paragraph):
                match = re.match(r"(exercise\s+\d[\w.]*)", before.astext().strip(), re.I)
                if match:
                    return match.group(1).lower()
        here = here.parent
    parent = node.parent
    while parent is not None and not isinstance(parent, nodes.section):
        parent = parent.parent
    if parent is None or not parent.children or not isinstance(parent[0], nodes.title):
        return ""
    title = parent[0].astext().strip()
    match = re.match(r"(exercise\s+[\w.]+)", title, re.I)
    return match.group(1).lower() if match else title


def _set_code(literal, text):
    literal.rawsource = text
    literal.children = [nodes.Text(text)]


class SolutionCells(SphinxPostTransform):
    """Solutions read "Show solution" / "Hide solution" and lose nbgrader's markers.

    Runs just before myst-nb's ``HideInputCells`` post-transform (priority 199), which wraps the
    hidden inputs in a toggle with the cell's ``prompt_show`` and ``prompt_hide``.
    """

    default_priority = 198
    formats = ("html",)

    def run(self, **kwargs):
        seen, solutions = {}, []
        for cell in self.document.findall(nodes.container):
            if cell.get("nb_element") != "cell_code":
                continue
            for literal in cell.findall(nodes.literal_block):
                text = literal.astext()
                new = SOLUTION_MARKERS.sub("", HIDDEN_TESTS.sub("", text))
                if new != text:
                    _set_code(literal, new)
            nbgrader = (cell.get("cell_metadata") or {}).get("nbgrader") or {}
            if nbgrader.get("solution") and cell.get("hide_mode"):
                name = _exercise_name(cell)
                seen[name] = seen.get(name, 0) + 1
                cell["prompt_show"], cell["prompt_hide"] = "Show solution", "Hide solution"
                solutions.append((cell, name, seen[name]))
        # several solution cells in one exercise: "part 1", "part 2", ... so every toggle's name differs
        for cell, name, part in solutions:
            suffix = f" to {name}" if name else ""
            if seen[name] > 1:
                suffix += f", part {part}"
            cell["gf_solution_suffix"] = suffix


class KeepPunctuationWithFormulas(SphinxPostTransform):
    """An inline formula keeps its punctuation on its line: ``$x$,`` never leaves the comma at the
    start of the next line, nor ``($x$`` the bracket at the end of the previous one.

    A MathJax formula is one unbreakable box, and browsers may break a line between it and the
    text around it. The formula and its adjacent punctuation go into one ``span.gf-nowrap``.
    """

    default_priority = 400
    formats = ("html",)
    AFTER = re.compile(r"^[.,;:!?)\]}’”…]+")
    BEFORE = re.compile(r"[(\[{‘“]+$")

    def run(self, **kwargs):
        for math in list(self.document.findall(nodes.math)):
            parent = math.parent
            if parent is None or isinstance(parent, nodes.inline) and "gf-nowrap" in parent["classes"]:
                continue
            i = parent.index(math)
            after = parent[i + 1] if i + 1 < len(parent) and isinstance(parent[i + 1], nodes.Text) else None
            before = parent[i - 1] if i > 0 and isinstance(parent[i - 1], nodes.Text) else None
            tail = self.AFTER.match(str(after)) if after is not None else None
            head = self.BEFORE.search(str(before)) if before is not None else None
            if not (tail or head):
                continue
            group = nodes.inline(classes=["gf-nowrap"])
            if head:
                parent.replace(before, nodes.Text(str(before)[:head.start()]))
                group += nodes.Text(head.group())
            parent.replace(math, group)
            group += math
            if tail:
                parent.replace(after, nodes.Text(str(after)[tail.end():]))
                group += nodes.Text(tail.group())


def link_figures(app, doctree, docname):
    """``doctree-resolved``: each figure links to its full-size image (tap to enlarge on a phone)."""
    builder = app.builder
    if builder.format != "html":
        return
    for image in list(doctree.findall(nodes.image)):
        if isinstance(image.parent, nodes.reference) or image["uri"].startswith("data:"):
            continue
        uri = image["uri"]
        if uri not in app.env.images:
            continue
        # where the HTML builder will copy it (builder.images and imgpath are set later, per page)
        images = relative_uri(builder.get_target_uri(docname), "_images")
        target = posixpath.join(images, app.env.images[uri][1])
        reference = nodes.reference("", "", internal=True, refuri=target, classes=["gf-figure-link"])
        image.replace_self(reference)
        reference.append(image)


def _visit_hidden_cell(self, node):
    """myst-nb's toggle, named by its own visible text (plus which exercise for a solution).

    myst-nb gives every toggle the same ``aria-label="Toggle hidden content"``, which also hides the
    visible "Show code cell source" from screen readers.
    """
    classes = " ".join(node["classes"])
    suffix = ""
    cell = node.parent
    if cell is not None and cell.get("gf_solution_suffix"):
        suffix = f'<span class="visually-hidden">{escape(cell["gf_solution_suffix"])}</span>'
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    self.body.append(f'<p class="collapsed admonition-title">{escape(node["prompt_show"])}{suffix}</p>\n')
    self.body.append(f'<p class="expanded admonition-title">{escape(node["prompt_hide"])}{suffix}</p>\n')
    self.body.append("</summary>\n")


def _depart_hidden_cell(self, node):
    self.body.append("</details>\n")


# -- after the build ------------------------------------------------------------------------------
def strip_hidden_tests(nb):
    """Remove ``### BEGIN/END HIDDEN TESTS`` blocks from a notebook dict's code cells; count them."""
    removed = 0
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        new, n = HIDDEN_TESTS.subn("", text)
        if n:
            removed += n
            cell["source"] = new.splitlines(keepends=True) if isinstance(source, list) else new
    return removed


def scrub_sources(app, exception):
    """``build-finished``: every notebook in the site (``_sources``, downloads) loses its hidden tests."""
    if exception is not None or app.builder.format != "html":
        return
    for path in Path(app.outdir).rglob("*.ipynb"):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if strip_hidden_tests(nb):
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def favicon_on_redirect(app, exception):
    """``build-finished`` (after sphinx-external-toc writes it): the root ``index.html`` redirect
    names the favicon too, so a browser opening the site's root does not ask for a missing
    ``/favicon.ico``."""
    if exception is not None or app.builder.format != "html" or not app.config.html_favicon:
        return
    index = Path(app.outdir, "index.html")
    if not index.exists():
        return
    text = index.read_text(encoding="utf-8")
    match = re.fullmatch(r'\s*<meta http-equiv="Refresh" content="0; url=([^"]+)" />\s*', text)
    if not match:
        return
    url = escape(match.group(1), quote=True)
    icon = "_static/" + Path(app.config.html_favicon).name
    title = escape(app.config.html_title or app.config.project)
    index.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Refresh" content="0; url={url}" />\n'
        f'<link rel="icon" href="{icon}"><title>{title}</title></head>\n'
        f'<body><p><a href="{url}">{title}</a></p></body></html>\n',
        encoding="utf-8")


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
    """Kept for callers of the old name: see :func:`configure`."""
    configure(app, config)


def setup(app):
    app.connect("config-inited", configure)
    app.add_css_file(CSS_FILE)
    app.add_js_file(JS_FILE, defer="defer")
    try:
        from myst_nb.sphinx_ import HideCodeCellNode
    except ImportError:  # pragma: no cover - jupyter-book always brings myst-nb
        pass
    else:
        app.add_node(HideCodeCellNode, override=True, html=(_visit_hidden_cell, _depart_hidden_cell))
    app.add_post_transform(SolutionCells)
    app.add_post_transform(KeepPunctuationWithFormulas)
    app.connect("doctree-resolved", link_figures)
    app.connect("build-finished", shrink_images)
    app.connect("build-finished", scrub_sources)
    app.connect("build-finished", favicon_on_redirect, priority=900)
    # early: a handler that returns a template name stops later ones (emit_firstresult)
    app.connect("html-page-context", dedupe_scripts, priority=100)
    app.connect("html-page-context", drop_widget_state, priority=100)
    # late: after sphinx-book-theme (501) and pydata-sphinx-theme have filled the context
    app.connect("html-page-context", launch_buttons_only_on_notebooks, priority=900)
    app.connect("html-page-context", accessible_markup, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

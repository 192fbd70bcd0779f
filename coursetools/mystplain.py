"""MyST markdown to the plain markdown that Jupyter, Colab and Binder render (issue 17 item 5).

The book's notebooks are written for the site: MyST roles (``{eq}`eq-ch1-chain```,
``{cite:t}`he2016deep```, ``{doc}`Chapter 3 <../03_gradient_flow/gradient_flow>```),
equation labels after display math (``$$ ... $$ (eq-ch1-chain)``), targets (``(label)=``) and
directives (```` ```{note} ````) show as raw text anywhere else. :func:`plain_notebook` rewrites
the markdown cells of a notebook for students who open it outside the site:

- ``{eq}`label``` becomes the equation's number as the site prints it, "(1.2)";
- a labelled display equation gets that number as ``\\tag{1.2}``;
- ``{cite:t}`key``` becomes "He et al. (2016a)", ``{cite:p}`a,b``` "(He et al., 2016a; Veit et
  al., 2016)", from ``book/references.bib`` (a, b tell apart the works of the same authors and
  year, ordered by title, as the site's labels do);
- ``{doc}`text <path>``` becomes "text", ``{doc}`path``` the title of that page; other roles
  keep their text;
- targets and MyST comments are dropped; admonitions become block quotes with a bold title,
  ``{math}`` directives display math, other directives their content.

Equation numbers are computed from ``_toc.yml`` the way jupyter-book numbers them: in a numbered
part, chapter ``c`` (counting from 1 across numbered parts) numbers its equations ``c.1, c.2, ...``
through its own file and then its sections, in order; the unnumbered pages share one counter
``1, 2, ...`` in the order of the toc (Sphinx's ``assign_figure_numbers`` keys its counters by section
number, and every unnumbered page has the same empty one).
A test compares them with the built site.

:func:`find_myst` lists the MyST constructs left in a text (the structure tests use it on the
exercise prompts, which students read in Jupyter).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

ROLE = re.compile(r"\{(?P<name>[a-zA-Z][\w:+-]*)\}`(?P<body>[^`]*)`")
# display math, paired from the left, with its label if one follows the closing $$ on that line
DISPLAY_MATH = re.compile(r"\$\$(?P<math>.+?)\$\$(?:[ \t]*\((?P<label>[^()\s]+)\))?", flags=re.S)
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=[ \t]*\n?", flags=re.M)
COMMENT = re.compile(r"^%[^\n]*\n?", flags=re.M)
DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})[ \t]*\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>[^\n]*)\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$\n?", flags=re.M | re.S)
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>[^\n]*)\n?", flags=re.M)
TITLED = ("note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso")


def find_myst(text):
    """The MyST roles, labels, targets and directives in markdown ``text`` (a list of strings)."""
    found = [m.group(0) for m in ROLE.finditer(text)]
    found += [f"$$ ({m.group('label')})" for m in DISPLAY_MATH.finditer(text) if m.group("label")]
    found += [m.group(0).strip() for m in TARGET.finditer(text)]
    found += [f"{m.group('fence')}{{{m.group('name')}}}" for m in DIRECTIVE.finditer(text)]
    return found


# ---------------------------------------------------------------- what the book knows


def _markdown_cells(path):
    path = Path(path)
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    return [path.read_text(encoding="utf-8")]


def _title(path):
    for text in _markdown_cells(path):
        m = re.search(r"^# (.+)$", text, flags=re.M)
        if m:
            return re.sub(r"[*_`]", "", ROLE.sub(lambda r: _role_text(r.group("body")), m.group(1))).strip()
    return Path(path).stem


def _role_text(body):
    m = re.fullmatch(r"(?s)(.*?)\s*<([^<>]+)>", body.strip())
    return m.group(1).strip() if m else body.strip()


def _toc_pages(root):
    """[(docname, chapter number or None)] in the order of ``_toc.yml``."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    pages, chapter = [(toc["root"], None)], 0
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for entry in part.get("chapters", []):
            number = None
            if part.get("numbered"):
                chapter += 1
                number = chapter
            pages.append((entry["file"], number))
            pages += [(s["file"], number) for s in entry.get("sections", [])]
    return pages


def _source(root, docname):
    for suffix in (".ipynb", ".md"):
        path = Path(root) / f"{docname}{suffix}"
        if path.exists():
            return path
    return None


@dataclass
class Book:
    """Equation numbers, page titles and bibliography of the book in ``root``."""

    equations: dict  # label -> (number, docname)
    titles: dict  # docname -> title
    citations: dict  # key -> (authors, year): "He et al.", "2016a"

    @classmethod
    def load(cls, root=ROOT):
        root = Path(root)
        equations, titles, counters = {}, {}, {}
        for docname, chapter in _toc_pages(root):
            path = _source(root, docname)
            if path is None:
                continue
            titles[docname] = _title(path)
            key = chapter  # None: every unnumbered page, one counter
            for text in _markdown_cells(path):
                for m in DISPLAY_MATH.finditer(text):
                    if not m.group("label"):
                        continue
                    counters[key] = counters.get(key, 0) + 1
                    n = counters[key]
                    equations[m.group("label")] = (f"{chapter}.{n}" if chapter is not None else str(n), docname)
        return cls(equations, titles, read_bib(root / "book" / "references.bib"))


# ---------------------------------------------------------------- the bibliography


_ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303", "c": "\u0327"}


def _latex_text(s):
    s = re.sub(r"\{?\\([`'\"^~c])\{?([A-Za-z])\}?\}?", lambda m: m.group(2) + _ACCENTS[m.group(1)], s)
    import unicodedata

    return unicodedata.normalize("NFC", s.replace("{", "").replace("}", "")).strip()


def _surname(author):
    author = author.strip()
    if "," in author:
        return _latex_text(author.split(",")[0])
    return _latex_text(author.split()[-1])


def read_bib(path):
    """{key: (authors, year)}: "He et al." / "Glorot and Bengio" / "Hochreiter", and "2016a"."""
    text = Path(path).read_text(encoding="utf-8")
    entries = {}
    for m in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", text, flags=re.S):
        key, body = m.group(1), m.group(2)
        fields = {f.group(1).lower(): f.group(2) for f in
                  re.finditer(r"(\w+)\s*=\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}", body)}
        names = [a for a in re.split(r"\s+and\s+", fields.get("author", "")) if a.strip()]
        surnames = [_surname(a) for a in names]
        if len(surnames) >= 3:
            authors = f"{surnames[0]} et al."
        elif len(surnames) == 2:
            authors = f"{surnames[0]} and {surnames[1]}"
        else:
            authors = surnames[0] if surnames else key
        entries[key] = (authors, fields.get("year", "n.d.").strip(), _latex_text(fields.get("title", "")))
    groups = {}
    for key, (authors, year, title) in entries.items():
        groups.setdefault((authors, year), []).append((title.lower(), key))
    result = {}
    for (authors, year), members in groups.items():
        for i, (_, key) in enumerate(sorted(members)):
            result[key] = (authors, year + ("abcdefghijklmnopqrstuvwxyz"[i] if len(members) > 1 else ""))
    return result


# ---------------------------------------------------------------- the conversion


class Converter:
    """Rewrites the markdown of page ``docname`` (e.g. "book/01_vanishing/vanishing") of ``book``."""

    def __init__(self, book, docname):
        self.book, self.docname = book, docname
        self.unknown = []  # labels, keys and pages the book does not know

    def equation(self, label):
        """"(1.2)", as the site prints a reference (the text around it names another page if needed)."""
        if label not in self.book.equations:
            self.unknown.append(f"equation {label!r}")
            return f"({label})"
        return f"({self.book.equations[label][0]})"

    def cite(self, keys, parenthetical):
        parts = []
        for key in [k.strip() for k in keys.split(",") if k.strip()]:
            if key not in self.book.citations:
                self.unknown.append(f"citation {key!r}")
                parts.append((key, "?"))
            else:
                parts.append(self.book.citations[key])
        if parenthetical:
            return "(" + "; ".join(f"{a}, {y}" for a, y in parts) + ")"
        return ", ".join(f"{a} ({y})" for a, y in parts)

    def doc(self, body):
        text = _role_text(body)
        if text != body.strip():
            return text
        target = (Path(self.docname).parent / body.strip()).as_posix()
        target = re.sub(r"[^/]+/\.\./", "", target)  # resolve "a/../"
        if target.startswith("/"):
            target = target[1:]
        if target not in self.book.titles:
            self.unknown.append(f"page {body.strip()!r}")
            return body.strip()
        return self.book.titles[target]

    def role(self, m):
        name, body = m.group("name"), m.group("body")
        if name in ("eq",):
            text = _role_text(body)
            return text if text != body.strip() else self.equation(body.strip())
        if name.startswith("cite"):
            return self.cite(body, parenthetical=name in ("cite:p", "cite:ps", "cite"))
        if name == "doc":
            return self.doc(body)
        if name == "math":
            return f"${body}$"
        return _role_text(body)

    def directive(self, m):
        name, arg, body = m.group("name"), m.group("arg").strip(), m.group("body")
        options = {o.group("key"): o.group("value").strip() for o in OPTION.finditer(body)}
        body = OPTION.sub("", body).strip("\n")
        if name == "math":
            tag = f"\\tag{{{self.equation(options['label'])[1:-1]}}}\n" if "label" in options else ""
            return f"$$\n{body}\n{tag}$$\n"
        if name in ("figure", "image"):
            return f"![{options.get('alt', '')}]({arg})\n" + (f"\n{self.text(body)}\n" if body.strip() else "")
        title = arg if name == "admonition" else (name.capitalize() + (f": {arg}" if arg else ""))
        if name == "admonition" or name in TITLED:
            inner = self.text(body)
            lines = [f"> **{title}**", ">"] + [f"> {line}" if line else ">" for line in inner.splitlines()]
            return "\n".join(lines) + "\n"
        return self.text(body) + "\n"

    def text(self, text):
        text = DIRECTIVE.sub(self.directive, text)
        text = TARGET.sub("", text)
        text = COMMENT.sub("", text)

        # roles outside display math; a labelled equation gets its number as a \tag
        pieces, last = [], 0
        for m in DISPLAY_MATH.finditer(text):
            pieces.append(ROLE.sub(self.role, text[last:m.start()]))
            if m.group("label"):
                number = self.equation(m.group("label"))[1:-1]
                pieces.append(f"$${m.group('math').rstrip()}\n\\tag{{{number}}}\n$$")
            else:
                pieces.append(m.group(0))
            last = m.end()
        pieces.append(ROLE.sub(self.role, text[last:]))
        return "".join(pieces)


def plain_notebook(nb, docname, book=None):
    """Rewrite the markdown cells of notebook ``nb`` (a dict, changed in place) as plain markdown.

    ``docname`` is the page's path without suffix ("book/01_vanishing/vanishing"). Returns the
    list of labels, citation keys and pages that the book does not know (left as they were).
    """
    book = book or Book.load()
    conv = Converter(book, docname)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell["source"])
            new = conv.text(src)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
    return conv.unknown

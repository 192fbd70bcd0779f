"""MyST to plain markdown for notebooks opened outside the site (issue 17 item 5).

Exercise prompts must hold no MyST at all (students read them in Jupyter and Colab, where roles
show as raw text); everything else is converted by coursetools.mystplain for the student
repository, with the equation numbers the site prints (compared with the built site).
"""

import json
import re
from pathlib import Path

import pytest

from coursetools import mystplain

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def exercise_prompts(nb):
    """The markdown cells of the section headed exactly "## Exercises" (up to the next H1 or H2)."""
    prompts, inside = [], False
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            heading = re.search(r"^(#{1,2}) (.+?)\s*$", src, flags=re.M)
            if heading and heading.group(2) == "Exercises" and heading.group(1) == "##":
                inside = True
                prompts.append(cell)
                continue
            if heading and inside:
                inside = False
            if inside:
                prompts.append(cell)
    return prompts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_exercise_prompts_have_no_myst(path):
    nb = json.loads(path.read_text())
    found = {cell.get("id"): mystplain.find_myst("".join(cell["source"])) for cell in exercise_prompts(nb)}
    found = {k: v for k, v in found.items() if v}
    assert not found, ("exercise prompts are read in Jupyter and Colab, where MyST shows as raw text; write "
                       f"'the product formula (1.2) above' or 'He et al. (2016)' instead: {found}")


BOOK = mystplain.Book(
    equations={"eq-a": ("1.2", "book/01/a"), "eq-n": ("4", "book/notation")},
    titles={"book/notation": "Notation and conventions", "book/01/b": "The next page"},
    citations={"he2016deep": ("He et al.", "2016a"), "glorot2010": ("Glorot and Bengio", "2010")},
)


def convert(text, docname="book/01/a"):
    nb = {"cells": [{"cell_type": "markdown", "source": [text]}, {"cell_type": "code", "source": ["{eq}`x`"]}]}
    unknown = mystplain.plain_notebook(nb, docname, BOOK)
    assert nb["cells"][1]["source"] == ["{eq}`x`"]  # code cells are never touched
    return "".join(nb["cells"][0]["source"]), unknown


@pytest.mark.parametrize("myst, plain", [
    ("see {eq}`eq-a` and {eq}`eq-n`", "see (1.2) and (4)"),
    ("{cite:t}`he2016deep` showed", "He et al. (2016a) showed"),
    ("as shown {cite:p}`he2016deep,glorot2010`.", "as shown (He et al., 2016a; Glorot and Bengio, 2010)."),
    ("{cite:t}`he2016deep, glorot2010`", "He et al. (2016a), Glorot and Bengio (2010)"),
    ("the {doc}`next page <b>` and {doc}`../notation`", "the next page and Notation and conventions"),
    ("{math}`x^2` and {ref}`the table <tab-1>`", "$x^2$ and the table"),
    ("(sec-x)=\n## Title\n", "## Title\n"),
    ("% a comment\ntext", "text"),
])
def test_roles_and_targets_become_plain_text(myst, plain):
    text, unknown = convert(myst)
    assert text == plain and unknown == []


def test_labelled_equations_get_their_number_as_a_tag_and_others_stay():
    text, _ = convert("$$\nx = 1\n$$\n\nthen\n\n$$ y = 2 $$ (eq-a)\n")
    assert text == "$$\nx = 1\n$$\n\nthen\n\n$$ y = 2\n\\tag{1.2}\n$$\n"
    assert mystplain.find_myst(text) == []


def test_directives_become_quotes_math_or_their_content():
    text, _ = convert(":::{note}\nRead {eq}`eq-a`.\n:::\n")
    assert text == "> **Note**\n>\n> Read (1.2).\n"
    text, _ = convert("```{admonition} Why it works\n:class: tip\nBecause.\n```\n")
    assert text == "> **Why it works**\n>\n> Because.\n"
    text, _ = convert("```{math}\n:label: eq-a\nz = 3\n```\n")
    assert text == "$$\nz = 3\n\\tag{1.2}\n$$\n"


def test_what_the_book_does_not_know_is_reported_and_left_readable():
    text, unknown = convert("{eq}`eq-zz`, {cite:t}`nobody2099` and {doc}`missing`")
    assert text == "(eq-zz), nobody2099 (?) and missing"
    assert unknown == ["equation 'eq-zz'", "citation 'nobody2099'", "page 'missing'"]


def test_the_bibliography_gives_surnames_years_and_letters_like_the_site():
    cites = mystplain.read_bib(ROOT / "book" / "references.bib")
    assert cites["he2016deep"] == ("He et al.", "2016a") and cites["he2016identity"] == ("He et al.", "2016b")
    assert cites["glorot2010understanding"] == ("Glorot and Bengio", "2010")
    assert cites["hochreiter1991untersuchungen"] == ("Hochreiter", "1991")


def test_every_role_of_the_book_converts(tmp_path):
    book = mystplain.Book.load(ROOT)
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        docname = path.relative_to(ROOT).with_suffix("").as_posix()
        assert mystplain.plain_notebook(nb, docname, book) == [], docname
        cells = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
        left = [x for c in cells for x in mystplain.find_myst("".join(c["source"]))]
        assert left == [], f"{docname}: {left}"


def test_equation_numbers_are_those_of_the_built_site(site_dir):
    book = mystplain.Book.load(ROOT)
    site = {}
    for page in {doc for _, doc in book.equations.values()}:
        html = (site_dir / f"{page}.html").read_text()
        for m in re.finditer(r'id="equation-([^"]+)">\s*<span class="eqno">\(([^)]*)\)', html):
            site[m.group(1)] = (m.group(2), page)
    assert book.equations == site

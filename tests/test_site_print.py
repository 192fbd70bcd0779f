"""Printing a chapter (Chromium's PDF, as a reader's "Print to PDF"): code wraps instead of being
clipped, and no code cell leaves an empty box at the bottom of a page.

How it is checked. Before printing, the test marks every code box twice with tiny text: one
marker at the top of the box (``div.highlight``) and one at the top of its code (``pre``). A
code cell that leaves an empty box at a page break has its box's marker on one page and its code's
marker on the next. And the text of every code block, without white space, must be in the PDF's
text: a clipped line would be missing its end.
"""

import io
import re

import pytest
from conftest import SITE

# Every page made from a notebook (the chapters, notation, batchnorm).
CHAPTERS = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("book/**/*.html")
                  if (SITE.parents[1] / p.relative_to(SITE)).with_suffix(".ipynb").exists()) if SITE.exists() else []

_MARK_JS = """() => {
  const blocks = [...document.querySelectorAll('article div.highlight')].filter(b => b.querySelector('pre'));
  const style = 'position:absolute;left:0;top:0;font-size:2px;line-height:2px;color:#fff;white-space:nowrap';
  const texts = [];
  blocks.forEach((block, i) => {
    const box = block.closest('div.cell_input') || block;  // the box that draws the cell's frame
    const pre = block.querySelector('pre');
    box.style.position = 'relative';
    pre.style.position = 'relative';
    texts.push(pre.textContent);
    for (const [where, tag] of [[box, 'A'], [pre, 'B']]) {
      const m = document.createElement('span');
      m.setAttribute('style', style);
      m.textContent = `GFMARK${tag}${i}Z`;
      where.prepend(m);
    }
  });
  document.querySelectorAll('details').forEach(d => { d.open = true; });  // print the solutions too
  const end = document.createElement('p');  // the article's last line: the PDF must reach it
  end.setAttribute('style', style.replace('position:absolute;left:0;top:0;', ''));
  end.textContent = 'GFMARKENDZ';
  document.querySelector('article').append(end);
  return texts;
}"""

# After print media is on: web fonts loaded, two frames rendered, and every code block laid out.
_SETTLED_JS = """async () => {
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [...document.querySelectorAll('article div.highlight')].filter(b => b.querySelector('pre'))
    .map((b, i) => [i, b.querySelector('pre').getBoundingClientRect().height]).filter(([, h]) => h === 0)
    .map(([i]) => i + 1);
}"""


def _squash(text):
    return re.sub(r"\s+", "", text)


@pytest.mark.site
@pytest.mark.parametrize("path", CHAPTERS)
def test_printed_chapter_keeps_all_code_and_no_empty_boxes(offline_page, base_url, path):
    pypdf = pytest.importorskip("pypdf")
    page = offline_page.page
    offline_page.goto(base_url + path)
    if page.locator(".math").count():
        page.wait_for_function(
            "() => [...document.querySelectorAll('.math')].every(m => m.querySelector('mjx-container'))"
            " && document.documentElement.hasAttribute('data-gf-math-fitted')",
            timeout=20_000)
    texts = page.evaluate(_MARK_JS)
    assert texts, f"{path}: no code block"
    page.emulate_media(media="print")
    unrendered = page.evaluate(_SETTLED_JS)
    assert not unrendered, f"{path}: code blocks with no height in print: {unrendered}"
    pdf = pypdf.PdfReader(io.BytesIO(page.pdf(format="A4", print_background=True)))
    pages = [p.extract_text() for p in pdf.pages]
    assert any("GFMARKENDZ" in t for t in pages), \
        f"{path}: the PDF's text ({len(pages)} pages) stops before the end of the article"
    where = {}
    for number, text in enumerate(pages):
        for tag, i in re.findall(r"GFMARK([AB])(\d+)Z", text):
            where.setdefault((tag, int(i)), number + 1)
    absent = [i + 1 for i in range(len(texts)) if ("A", i) not in where and ("B", i) not in where]
    assert not absent, (f"{path}: code blocks absent from the PDF's text ({len(pages)} pages, characters per "
                        f"page {[len(t) for t in pages]}): {absent}")
    empty = [f"code block {i + 1} (box on page {where.get(('A', i))}, code on page {where.get(('B', i))})"
             for i in range(len(texts)) if where.get(("A", i)) != where.get(("B", i))]
    assert not empty, f"{path}: code boxes left empty at a page break: {empty}"
    printed = _squash(re.sub(r"GFMARK([AB]\d+|END)Z", "", "".join(pages)))
    clipped = []
    for i, text in enumerate(texts):
        for line in text.splitlines():
            if _squash(line) and _squash(line) not in printed:
                clipped.append(f"block {i + 1}: {line.strip()[:70]}")
    assert not clipped, f"{path}: {len(clipped)} code lines missing from the PDF (clipped?): {clipped[:5]}"

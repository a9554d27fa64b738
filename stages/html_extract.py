"""HTML -> main text: resiliparse's main-content extraction, boilerplate-line rules on its
output, and trafilatura for the pages where next to nothing is left.

* ``resiliparse``: ``extract_plain_text(main_content=True)`` as it is.
* ``resiliparse_rules``: the same, less the lines ``clean_lines`` drops: what follows the
  article after a short heading ("related", tags, newsletter, author boxes), breadcrumbs,
  bylines and dates above the article.
* ``hybrid`` (default): ``resiliparse_rules``, and trafilatura's extraction of the page when
  the rules leave under ``MIN_KEPT_CHARS`` (``needs_fallback``), so most pages cost one
  resiliparse pass and no page comes out empty where trafilatura finds text.
* ``trafilatura`` / ``trafilatura_fast``: trafilatura's extraction (comments dropped, tables
  kept), for comparison; ``hybrid_fast`` falls back to its fast mode.

The rules were tuned on one half of ``shared/data/real_pages`` (``bench/_real_pages.held_out``
says which) and use no site names or page strings. Output lines are paragraphs
(``preserve_formatting``); list items start with ``• `` (not indented).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

BODY_MIN_WORDS = 12    # running text: a line of at least this many words ending like a sentence
HEADING_MAX_WORDS = 4  # a short heading: at most this many words, not ending like a sentence
MIN_KEPT_CHARS = 200   # rules' output with fewer non-space characters goes to trafilatura

_SENTENCE_END = re.compile(r"(?<!\.\.)[.!?:;\"'”“»«)]\s*$")  # not "..." / "…" (teasers)
_DATE_OR_TIME = re.compile(  # 15:40, 04.06.2019, 2019-06-04, 4. Juni 2019, June 4, 2019
    r"\b\d{1,2}:\d{2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b"
    r"|\b\d{1,2}\.? [^\W\d_]{3,}\.? (?:19|20)\d{2}\b|[^\W\d_]{3,}\.? \d{1,2}, (?:19|20)\d{2}\b")
_BREADCRUMB = re.compile(r"(?:^|\s)(?:>|›|»|/|\|)\s\S.*(?:\s(?:>|›|»|/|\|)\s)")


@dataclass
class Line:
    """One output paragraph: ``text`` (stripped, bullet removed), ``bullet``, ``indent``
    (leading white space of a line that is no list item: code in ``<pre>`` keeps it), ``words``,
    ``is_sentence`` (ends like a sentence, not like a teaser cut with "..."), ``is_body``
    (running text: at least ``BODY_MIN_WORDS`` words and a sentence)."""
    text: str
    bullet: bool
    indent: str = ""
    words: int = 0
    is_sentence: bool = False
    is_body: bool = False

    def __post_init__(self):
        self.words = len(self.text.split())
        self.is_sentence = bool(_SENTENCE_END.search(self.text))
        self.is_body = self.words >= BODY_MIN_WORDS and self.is_sentence


def text_lines(text: str) -> list[Line]:
    """The non-blank lines of extracted text (``preserve_formatting`` output) as ``Line``s."""
    lines = []
    for raw in text.split("\n"):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped[0] == "•":
            if stripped := stripped[1:].lstrip():
                lines.append(Line(stripped, True))
        else:
            indent = raw[:len(raw) - len(raw.lstrip())] if raw[0].isspace() else ""
            lines.append(Line(stripped, False, indent))
    return lines


def _is_heading(line: Line) -> bool:
    return line.words <= HEADING_MAX_WORDS and not line.is_sentence


def clean_lines(lines: list[Line]) -> list[Line]:
    """The lines that are not boilerplate: those up to the first short heading after the last
    paragraph of running text (what follows it is "related", tags, newsletter, author boxes,
    comment counts), less breadcrumbs and the short lines with a date or time above the
    article (bylines, dates). A page without running text (also text without spaces between
    words, as Chinese or Japanese) keeps every line."""
    body = [i for i, line in enumerate(lines) if line.is_body]
    if not body:
        return lines
    first, end = body[0], body[-1] + 1
    while end < len(lines) and not _is_heading(lines[end]):
        end += 1
    return [line for i, line in enumerate(lines[:end])
            if line.is_sentence or line.words > 30 or not (_BREADCRUMB.search(line.text) or (
                i < first and line.words <= 8 and _DATE_OR_TIME.search(line.text)))]


def render(lines: list[Line]) -> str:
    """Lines as text: paragraphs apart by a blank line, list items as ``• item`` (not
    indented, unlike resiliparse's output), other lines with their indentation."""
    return "\n\n".join(("• " if line.bullet else line.indent) + line.text for line in lines)


def resiliparse_text(html: str) -> str:
    """Main-content plain text of an HTML page (resiliparse: navigation, footers, cookie
    banners and sidebars removed; paragraphs kept as lines; alt texts, form fields and user
    comment sections dropped)."""
    return extract_plain_text(HTMLTree.parse(html), main_content=True, preserve_formatting=True,
                              alt_texts=False, links=False, form_fields=False, comments=False).strip()


def resiliparse_rules_text(html: str) -> str:
    return render(clean_lines(text_lines(resiliparse_text(html))))


def trafilatura_text(html: str, fast: bool = False) -> str:
    """trafilatura's main text (``fast``: without its readability/jusText comparison)."""
    import trafilatura
    return trafilatura.extract(html, include_comments=False, include_tables=True, fast=fast) or ""


def needs_fallback(kept: list[Line]) -> bool:
    """Whether the rules' output looks wrong: next to nothing left of the page."""
    return sum(len(line.text) - line.text.count(" ") for line in kept) < MIN_KEPT_CHARS


def hybrid_text(html: str, fast: bool = False) -> str:
    """``resiliparse_rules``, or trafilatura's text when ``needs_fallback`` (and it has one)."""
    kept = clean_lines(text_lines(resiliparse_text(html)))
    if needs_fallback(kept):
        try:
            text = trafilatura_text(html, fast=fast)
        except Exception:  # noqa: BLE001 - lxml and trafilatura errors on odd HTML: keep ours
            text = ""
        if text.strip():
            return text
    return render(kept)


EXTRACTORS = {
    "hybrid": hybrid_text,
    "hybrid_fast": lambda html: hybrid_text(html, fast=True),  # trafilatura's fast mode as fallback
    "resiliparse_rules": resiliparse_rules_text,
    "resiliparse": resiliparse_text,
    "trafilatura": trafilatura_text,
    "trafilatura_fast": lambda html: trafilatura_text(html, fast=True),
}
DEFAULT_EXTRACTOR = "hybrid"


def html_main_text(html: str, extractor: str = DEFAULT_EXTRACTOR) -> str:
    """Main text of an HTML page by the named extractor (``EXTRACTORS``)."""
    return EXTRACTORS[extractor](html).strip()

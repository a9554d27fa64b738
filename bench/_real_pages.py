"""Real pages with extraction expectations (`../shared/data/real_pages` beside the checkout, or
any WARC + expectations JSON a user passes): loading and scoring, shared by
`bench/extraction_real.py` and the tests.

Expectations: `{url: {"must_contain": [...], "must_not_contain": [...], "lang": ...}}`.
Scoring follows trafilatura's own evaluation (tests/realworld_tests.py, comparison script): a
must-contain string found is a true positive, missed a false negative; a must-not-contain
string found is a false positive. Strings are compared with white space collapsed.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL_PAGES = REPO.parent / "shared" / "data" / "real_pages"
_SPACE = re.compile(r"\s+")


def collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@dataclass
class RealPage:
    url: str
    html_bytes: bytes
    http_charset: str | None
    must_contain: list[str] = field(default_factory=list)
    must_not_contain: list[str] = field(default_factory=list)
    lang: str | None = None


def load_pages(warc: Path | None = None, expect: Path | None = None) -> list[RealPage]:
    """Every HTML response record of the WARC, with its expectations (if any), in file order."""
    from warcio.archiveiterator import ArchiveIterator

    warc = warc or SHARED_REAL_PAGES / "pages.warc.gz"
    expect = expect or warc.with_name("expect.json")
    expectations = json.loads(Path(expect).read_text()) if Path(expect).exists() else {}
    pages = []
    with open(warc, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "response":
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            ctype = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
            charset = None
            for part in ctype.split(";")[1:]:
                key, _, value = part.strip().partition("=")
                if key.lower() == "charset":
                    charset = value.strip().strip('"') or None
            e = expectations.get(url, {})
            pages.append(RealPage(url, record.content_stream().read(), charset,
                                  list(e.get("must_contain", [])), list(e.get("must_not_contain", [])),
                                  e.get("lang")))
    return pages


def held_out(page: RealPage) -> bool:
    """Whether ``page`` is in the held-out half: sha1 of its URL is odd. Extraction rules are
    tuned on the other half only."""
    return int(hashlib.sha1(page.url.encode()).hexdigest(), 16) % 2 == 1


@dataclass
class Score:
    found: int = 0
    contain: int = 0
    leaked: int = 0
    not_contain: int = 0
    empty_pages: list[str] = field(default_factory=list)
    pages_with_expectations: int = 0

    def add(self, page: RealPage, text: str) -> None:
        if not (page.must_contain or page.must_not_contain):
            return
        self.pages_with_expectations += 1
        out = collapse(text)
        if not out:
            self.empty_pages.append(page.url)
        self.found += sum(collapse(s) in out for s in page.must_contain)
        self.contain += len(page.must_contain)
        self.leaked += sum(collapse(s) in out for s in page.must_not_contain)
        self.not_contain += len(page.must_not_contain)

    @property
    def recall(self) -> float:
        return self.found / max(self.contain, 1)

    @property
    def leak_rate(self) -> float:
        return self.leaked / max(self.not_contain, 1)

    @property
    def precision(self) -> float:
        return self.found / max(self.found + self.leaked, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def page_leaks(page: RealPage, text: str) -> tuple[list[str], list[str]]:
    """(must-contain strings missed, must-not-contain strings leaked) of one page."""
    out = collapse(text)
    return ([s for s in page.must_contain if collapse(s) not in out],
            [s for s in page.must_not_contain if collapse(s) in out])

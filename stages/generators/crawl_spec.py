"""What the generated crawl is made of: its sites, its shape (``SyntheticCrawlConfig``), the
label columns of its ground truth, and the records of one page (``Page``, ``PageContent``);
plus the seeding and text helpers every part of the generator shares."""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field

from deeprecipe.pipeline.config import option

# Sites: host, language, scheme and URL style (which URL variants make sense depends on it).

@dataclass(frozen=True)
class Site:
    name: str
    host: str
    lang: str
    scheme: str       # scheme of the canonical URL: 'https' or 'http'
    url_style: str    # 'dated' | 'html' | 'unicode' | 'query' | 'slash' | 'section'
    street: str
    section: str = ""  # first URL path segment of every page ('section' style only)


SITES: tuple[Site, ...] = (
    Site("The Harbour Times", "www.harbourtimes.co.uk", "en", "https", "dated", "12 Quay Street, Bristol"),
    Site("Nordstadt Kurier", "www.nordstadt-kurier.de", "de", "https", "html", "Hafenstra\u00dfe 4, 20457 Hamburg"),
    Site("Le Journal du Lac", "www.journal-du-lac.fr", "fr", "https", "unicode", "8 quai du Mont-Blanc, 74000 Annecy"),
    Site("Diario del Sur", "www.diariodelsur.es", "es", "http", "query", "Calle Larios 21, 29005 M\u00e1laga"),
    Site("Riverside Weekly", "riversideweekly.com", "en", "https", "slash", "400 River Road, Portland"),
    Site("Alpenblick Zeitung", "www.alpenblick-zeitung.at", "de", "http", "query", "Maria-Theresien-Stra\u00dfe 7, 6020 Innsbruck"),
    Site("Ouest Matin", "ouest-matin.fr", "fr", "https", "slash", "3 rue de la Marne, 44000 Nantes"),
    Site("El Faro Digital", "www.elfarodigital.es", "es", "https", "html", "Avenida del Puerto 15, 46023 Valencia"),
    Site("Metro Chronicle", "news.metrochronicle.com", "en", "https", "query", "88 Market Street, Leeds"),
    Site("Rheintal Bote", "www.rheintal-bote.de", "de", "https", "dated", "Rheinallee 30, 55116 Mainz"),
    Site("La Gazette de Provence", "www.gazette-provence.fr", "fr", "http", "html", "22 cours Mirabeau, 13100 Aix-en-Provence"),
    Site("Prairie Post", "www.prairiepost.com", "en", "https", "slash", "1200 Main Avenue, Fargo"),
)

# Sites of the labelled pages (English): math pages only on the first ``math_domains`` math sites,
# each under one URL section (a URL prefix a DeepSeekMath-style loop can mark as math).
MATH_SITES: tuple[Site, ...] = (
    Site("Proof Corner", "www.proofcorner.org", "en", "https", "section", "1 College Lane, Cambridge",
         "questions"),
    Site("Calculus Notes", "calculus-notes.net", "en", "https", "section", "77 Euler Street, Boston",
         "notes"),
    Site("Number Theory Digest", "www.numbertheorydigest.org", "en", "https", "section",
         "5 Gauss Road, Durham", "articles"),
    Site("Algebra Hub", "algebrahub.io", "en", "https", "section", "9 Noether Way, Oxford", "threads"),
)
CODE_SITES: tuple[Site, ...] = (
    Site("Byte Notes", "bytenotes.dev", "en", "https", "section", "21 Kernel Street, Austin", "snippets"),
    Site("Loop and Lambda", "www.loopandlambda.com", "en", "https", "section", "3 Compiler Row, Dublin",
         "tutorials"),
)
SPAM_SITES: tuple[Site, ...] = (
    Site("Best Deals Online", "best-deals-online.biz", "en", "http", "section", "PO Box 17, Road Town",
         "offers"),
    Site("Free Bonus Hub", "www.freebonushub.net", "en", "https", "section", "PO Box 99, Belize City",
         "win"),
    Site("Replica Outlet", "replica-outlet.info", "en", "http", "section", "PO Box 5, Victoria", "shop"),
)

# URL variant kinds generated for re-crawled pages; every one must normalise to the canonical key.
URL_VARIANT_KINDS = ("scheme", "host_case", "default_port", "trailing_slash", "fragment",
                     "tracking_params", "param_order", "percent_encoding", "combined")

# Records that are not documents, with the ingest skip reason each must be counted under.
NON_DOCUMENT_KINDS: dict[str, str] = {
    "warcinfo": "non_response", "request": "non_response", "metadata": "non_response",
    "http_404": "http_status", "redirect": "http_status",
    "image": "non_html", "stylesheet": "non_html",
}

# Target Jaccard ranges (word 5-gram shingles of the article text) of the three pair kinds.
PAIR_JACCARD: dict[str, tuple[float, float]] = {"near_high": (0.91, 0.98), "near_mid": (0.62, 0.88),
                                                "far": (0.05, 0.45)}
MAX_NON_NATURAL_SHARE = 0.4  # labelled + duplicate + URL-variant slots; natural pages >= 60 %


@dataclass(frozen=True)
class SyntheticCrawlConfig:
    """Shape of the generated crawl. ``pages_per_file`` counts HTML page responses (originals,
    exact duplicates and URL variants) per WARC file; non-document records come on top."""
    seed: int = option("generator seed (pages, sites, duplicates; same seed = same bytes)", 0)
    num_files: int = option("WARC.gz files to generate", 4)
    pages_per_file: int = option("HTML pages per generated WARC file (originals, exact "
                                 "duplicates and URL variants; other records on top)", 250)
    num_sites: int = option("sites generated: the first num_sites of SITES (1..12)", 10)
    exact_dup_rate: float = option("share of page slots that copy another page's bytes", 0.05)
    url_variant_rate: float = option("share of page slots that re-crawl a page under a URL "
                                     "variant", 0.10)
    request_record_rate: float = option("share of pages preceded by their HTTP request record",
                                        0.05)
    non_document_records: tuple[str, ...] = option(
        "non-document records per file, besides warcinfo",
        ("request", "metadata", "http_404", "redirect", "image", "stylesheet"))
    paragraphs: tuple[int, int] = option("min, max paragraphs per article", (3, 7))
    sentences_per_paragraph: tuple[int, int] = option("min, max sentences per paragraph", (3, 6))
    legacy_charset_rate: float = option("share of pages served as windows-1252 instead of UTF-8",
                                        0.15)
    # Labelled pages, per page slot of a file (count per file = round(rate * pages_per_file)).
    # A pair rate counts pairs: each pair puts one page into this file and one into the next.
    near_dup_high_rate: float = option("near-duplicate pairs at Jaccard >= 0.9, per page slot",
                                       0.015)
    near_dup_mid_rate: float = option("near-duplicate pairs at Jaccard 0.6-0.9, per page slot",
                                      0.01)
    far_pair_rate: float = option("pairs sharing one text block (Jaccard <= 0.5), per page slot",
                                  0.015)
    spam_rate: float = option("spam / low-quality pages (SPAM_GENERATORS kinds in turn)", 0.02)
    pii_rate: float = option("pages with planted PII and look-alikes", 0.02)
    code_rate: float = option("code pages (code sites)", 0.01)
    math_rate: float = option("math pages (math sites)", 0.02)
    boilerplate_rate: float = option("pages with shared cross-site boilerplate sentences", 0.05)
    contamination_rate: float = option("pages embedding an evaluation item verbatim", 0.005)
    math_domains: int = option("math sites: the first math_domains of MATH_SITES", 3)
    boilerplate_pool: int = option("distinct shared boilerplate sentences", 12)
    eval_pool: int = option("evaluation items contaminated pages draw from "
                            "(eval_items(seed, eval_pool))", 50)

    def __post_init__(self):
        if not 1 <= self.num_sites <= len(SITES):
            raise ValueError(f"num_sites must be in 1..{len(SITES)}, got {self.num_sites}")
        if self.exact_dup_rate + self.url_variant_rate >= 0.9:
            raise ValueError("exact_dup_rate + url_variant_rate must stay below 0.9")
        unknown = set(self.non_document_records) - set(NON_DOCUMENT_KINDS)
        if unknown:
            raise ValueError(f"unknown non_document_records {sorted(unknown)}; "
                             f"choose from {sorted(NON_DOCUMENT_KINDS)}")
        if any(rate < 0 for rate in self.labelled_rates().values()):
            raise ValueError(f"labelled page rates must be >= 0, got {self.labelled_rates()}")
        non_natural = self.labelled_page_share() + self.exact_dup_rate + self.url_variant_rate
        if non_natural > MAX_NON_NATURAL_SHARE:
            raise ValueError(
                f"labelled pages ({self.labelled_page_share():.3f} of the slots) plus duplicates and URL "
                f"variants make {non_natural:.3f} > {MAX_NON_NATURAL_SHARE} of the crawl; lower the "
                "*_rate fields so natural pages stay at least 60 %")
        if not 1 <= self.math_domains <= len(MATH_SITES):
            raise ValueError(f"math_domains must be in 1..{len(MATH_SITES)}, got {self.math_domains}")
        if self.boilerplate_pool < 1 or self.eval_pool < 1:
            raise ValueError("boilerplate_pool and eval_pool must be >= 1")

    def labelled_rates(self) -> dict[str, float]:
        """Rate per page slot of each labelled role kind (pair kinds: pairs per slot)."""
        return {"near_high": self.near_dup_high_rate, "near_mid": self.near_dup_mid_rate,
                "far": self.far_pair_rate, "spam": self.spam_rate, "pii": self.pii_rate,
                "code": self.code_rate, "math": self.math_rate, "boilerplate": self.boilerplate_rate,
                "contaminated": self.contamination_rate}

    def labelled_page_share(self) -> float:
        """Share of page slots holding labelled pages (a pair puts two pages into the crawl)."""
        return sum(rate * (2 if kind in PAIR_JACCARD else 1) for kind, rate in self.labelled_rates().items())

    def labelled_counts(self) -> dict[str, int]:
        """Labelled pages per file by role kind (pair kinds: pairs whose first page is in the file)."""
        return {kind: round(rate * self.pages_per_file) for kind, rate in self.labelled_rates().items()}


# One block of an article body: ('p', the sentences of a paragraph) or ('code', the lines of a
# <pre><code> block).
Block = tuple[str, list[str]]

# Ground-truth label columns and their values for records without that label (no None in a column).
LABEL_DEFAULTS: dict[str, object] = {
    "label": "",              # natural | near_dup | far_pair | spam:<kind> | pii | code | math |
                              # boilerplate | contaminated ('' for non-document records)
    "pair_id": -1,            # near_dup / far_pair: id shared by the two pages of a pair
    "pair_member": -1,        # 0 = first page of the pair (file f), 1 = second (file f+1)
    "jaccard": -1.0,          # measured word-5-gram Jaccard of the pair's article texts
    "pii_items": "[]",        # JSON [[type, planted string], ...] (type: labelled_pii.PII_GENERATORS)
    "lookalikes": "[]",       # JSON [[kind, string], ...] that look like PII but are not
    "eval_item": -1,          # contaminated: index into eval_items.eval_items(seed, eval_pool)
    "boilerplate_items": "[]",  # JSON [[shared sentence index, text as planted, edited?], ...]
}


def page_labels(label: str, **values) -> dict:
    """Label columns of one page: ``LABEL_DEFAULTS`` with ``label`` and ``values`` set."""
    unknown = set(values) - set(LABEL_DEFAULTS)
    if unknown:
        raise KeyError(f"unknown label columns {sorted(unknown)}")
    return {**LABEL_DEFAULTS, "label": label, **values}


@dataclass
class Page:
    """One generated page: its canonical URL, HTML, what is article vs boilerplate, and labels."""
    page_id: int
    site: Site
    url: str                      # canonical URL
    title: str
    article_sentences: list[str]  # every sentence (code: non-empty line) of the article body, in order
    boilerplate_lines: list[str]  # nav, cookie banner, sidebar, footer strings shown on the page
    html: str
    charset: str                  # 'utf-8' | 'windows-1252-header' | 'windows-1252-meta' | 'windows-1252-none'
    paragraphs: list[list[str]] = field(default_factory=list)  # sentences of each 'p' block
    blocks: list[Block] = field(default_factory=list)
    byline: str = ""
    labels: dict = field(default_factory=lambda: page_labels("natural"))

    @property
    def label(self) -> str:
        return self.labels["label"]

    def article_text(self) -> str:
        """The article as main-text extraction gives it back (title, byline, blocks)."""
        return article_text(self.title, self.byline, self.blocks)


@dataclass
class PageContent:
    """What a page role puts into the page shell: site, headline, date, byline, body, labels."""
    site: Site
    title: str
    date: tuple[int, int, int, str]  # year, month, day, date as written in the site's language
    byline: str                      # '' for none
    blocks: list[Block]
    labels: dict



def seeded_rng(config: SyntheticCrawlConfig, *parts) -> random.Random:
    """A generator seeded from (seed, *parts): independent of generation order."""
    return random.Random("/".join(str(p) for p in (config.seed, *parts)))


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def slugify(text: str, max_words: int = 6) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = "".join(c if c.isalnum() else " " for c in ascii_text.lower()).split()
    return "-".join(words[:max_words]) or "page"



def block_text(block: Block) -> str:
    """A block's text as extracted: a paragraph's sentences joined by spaces, code lines by newlines."""
    tag, items = block
    return "\n".join(items) if tag == "code" else " ".join(items)


def article_text(title: str, byline: str, blocks: list[Block]) -> str:
    """Title, byline (if any) and blocks, one per line: the main text of the article."""
    return "\n".join([title, *([byline] if byline else []), *(block_text(b) for b in blocks)])


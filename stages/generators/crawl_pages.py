"""Which page each slot of the generated crawl holds (``slot_kind``: an original, an exact
duplicate or a URL variant; an original's ``Role``: natural, or one of the labelled kinds), the
content of each role (article, near-duplicate pairs, spam, PII, code, math, boilerplate,
contaminated) and the assembled page (``render_page``)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache

from deeprecipe.stages.generators import eval_items, labelled_pages, labelled_pii, labelled_prose
from deeprecipe.stages.generators.crawl_languages import LANGUAGE_PACKS
from deeprecipe.stages.generators.crawl_page_parts import (
    article_sentences, canonical_url, make_article, make_blocks_html, make_cookie_banner, make_date,
    make_footer, make_html_document, make_nav, make_share_bar, make_sidebar, make_title)
from deeprecipe.stages.generators.crawl_spec import (
    CODE_SITES, MATH_SITES, PAIR_JACCARD, SITES, SPAM_SITES, Block, Page, PageContent, Site,
    SyntheticCrawlConfig, article_text, block_text, page_labels, seeded_rng)


@dataclass(frozen=True)
class Role:
    """What an original page slot holds. ``kind``: 'natural' or a key of ``labelled_rates()``.
    ``index``: the pair id (pair kinds), the index into ``SPAM_KINDS`` (spam), the eval item
    (contaminated), else the page's ordinal within its kind. ``member``: 0 / 1 for the first /
    second page of a pair, else -1."""
    kind: str
    index: int = -1
    member: int = -1


NATURAL = Role("natural")
SPAM_KINDS: tuple[str, ...] = tuple(sorted(labelled_pages.SPAM_GENERATORS))
# Look-alikes planted on PII pages: all but code snippets (their curly brackets would make a
# C4-style filter drop the PII page before redaction could be measured; code has its own pages).
CRAWL_LOOKALIKE_KINDS = tuple(k for k in labelled_pii.LOOKALIKE_KINDS if k != "code")
PAIR_LABELS = {"near_high": "near_dup", "near_mid": "near_dup", "far": "far_pair"}


def pair_id_of(config: SyntheticCrawlConfig, kind: str, first_file: int, ordinal: int) -> int:
    """Crawl-wide id of pair ``ordinal`` of pair kind ``kind`` whose first page is in ``first_file``."""
    counts, offset = config.labelled_counts(), 0
    for k in PAIR_JACCARD:
        if k == kind:
            return offset + first_file * counts[k] + ordinal
        offset += config.num_files * counts[k]
    raise ValueError(f"unknown pair kind {kind!r}")


def pair_kind_of(config: SyntheticCrawlConfig, pair_id: int) -> str:
    """The pair kind ('near_high' | 'near_mid' | 'far') of a crawl-wide pair id."""
    counts, offset = config.labelled_counts(), 0
    for k in PAIR_JACCARD:
        offset += config.num_files * counts[k]
        if pair_id < offset:
            return k
    raise ValueError(f"pair id {pair_id} outside the crawl")


def file_role_list(config: SyntheticCrawlConfig, file_index: int) -> list[Role]:
    """The labelled roles of file ``file_index``: the first pages of its own pairs, the second
    pages of the previous file's pairs, then the single-page roles."""
    counts, previous = config.labelled_counts(), (file_index - 1) % config.num_files
    roles: list[Role] = []
    for kind in PAIR_JACCARD:
        roles += [Role(kind, pair_id_of(config, kind, file_index, j), 0) for j in range(counts[kind])]
        roles += [Role(kind, pair_id_of(config, kind, previous, j), 1) for j in range(counts[kind])]
    for kind in ("spam", "pii", "code", "math", "boilerplate", "contaminated"):
        for j in range(counts[kind]):
            ordinal = file_index * counts[kind] + j
            index = {"spam": ordinal % len(SPAM_KINDS), "contaminated": ordinal % config.eval_pool}.get(kind, ordinal)
            roles.append(Role(kind, index))
    return roles


@lru_cache(maxsize=1024)
def file_roles(config: SyntheticCrawlConfig, file_index: int) -> dict[int, Role]:
    """Slot -> role for the labelled original slots of a file (every other original is natural);
    the roles go to a seeded shuffle of the file's original slots."""
    roles = file_role_list(config, file_index)
    originals = [s for s in range(config.pages_per_file) if slot_kind(config, file_index, s) == "original"]
    if len(originals) < len(roles):
        raise ValueError(f"file {file_index} has {len(originals)} original page slots for {len(roles)} "
                         "labelled pages; raise pages_per_file or lower the labelled *_rate fields")
    seeded_rng(config, "roles", file_index).shuffle(originals)
    return dict(zip(originals, roles))


def page_role(config: SyntheticCrawlConfig, page_id: int) -> Role:
    """The role of page ``page_id`` (natural for page ids outside the crawl's original slots)."""
    file_index, slot = divmod(page_id, config.pages_per_file)
    if not 0 <= file_index < config.num_files:
        return NATURAL
    return file_roles(config, file_index).get(slot, NATURAL)


# ---------------------------------------------------------------------------- page contents

def news_sites(config: SyntheticCrawlConfig) -> tuple[Site, ...]:
    return SITES[:config.num_sites]


def _news_header(rng: random.Random, site: Site) -> tuple[str, tuple, str]:
    """(headline, date, byline) of a news article on ``site``."""
    pack = LANGUAGE_PACKS[site.lang]
    title = make_title(rng, pack)
    date = make_date(rng, pack)
    return title, date, pack.byline.format(name=rng.choice(pack.names), date=date[3])


def _paragraph_blocks(rng: random.Random, sentences: list[str], low: int = 3, high: int = 5) -> list[Block]:
    """Sentences grouped in order into paragraphs of ``low..high`` sentences."""
    blocks, i = [], 0
    while i < len(sentences):
        n = rng.randint(low, high)
        blocks.append(("p", sentences[i:i + n]))
        i += n
    return blocks


def _line_blocks(text: str) -> list[Block]:
    """One paragraph per non-empty line of ``text``."""
    return [("p", [line]) for line in text.split("\n") if line.strip()]


def natural_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A news article of one of the first ``num_sites`` sites, in the site's language."""
    return natural_content_on(config, SITES[rng.randrange(config.num_sites)], rng)


def natural_content_on(config: SyntheticCrawlConfig, site: Site, rng: random.Random) -> PageContent:
    """A news article of ``site``, in the site's language."""
    pack = LANGUAGE_PACKS[site.lang]
    title, paragraphs = make_article(rng, pack, config)
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    return PageContent(site, title, date, byline, [("p", p) for p in paragraphs], page_labels("natural"))


@lru_cache(maxsize=64)
def pack_vocabulary(lang: str) -> tuple[str, ...]:
    """The content words of a language pack (near-duplicate edits draw from them)."""
    pack = LANGUAGE_PACKS[lang]
    phrases = pack.subjects + pack.verbs + pack.objects + pack.adjectives + pack.places
    return tuple(sorted({w.strip(",.") for phrase in phrases for w in phrase.split() if len(w) > 2}))


@lru_cache(maxsize=64)
def pack_phrase_groups(lang: str) -> tuple[tuple[str, ...], ...]:
    """Interchangeable phrases of a language pack (objects, places, adjectives, verbs, names):
    a near-duplicate edit swaps one for another of its group, so the edited text stays natural."""
    pack = LANGUAGE_PACKS[lang]
    return (pack.objects, pack.places, pack.adjectives, pack.verbs, pack.names)


@lru_cache(maxsize=4096)
def pair_contents(config: SyntheticCrawlConfig, pair_id: int) -> tuple[PageContent, PageContent]:
    """Both pages of a pair: a 20-48 sentence news article on one site and, on another site of the
    same language, an edited re-publication under the same headline (near pairs: phrases swapped,
    sentences rewritten, added or deleted with the site's own sentence generator, so both pages
    read as natural text) or a new article that reuses one block of it (far pairs). Labels carry the Jaccard measured on the article texts."""
    kind = pair_kind_of(config, pair_id)
    rng = seeded_rng(config, "pair", pair_id)
    site_a = rng.choice(news_sites(config))
    same_language = [s for s in news_sites(config) if s.lang == site_a.lang and s != site_a]
    site_b = rng.choice(same_language) if same_language else site_a
    pack = LANGUAGE_PACKS[site_a.lang]
    title, date, byline = _news_header(rng, site_a)
    sentence = article_sentences(rng, pack)
    blocks_a: list[Block] = [("p", [sentence(rng) for _ in range(rng.randint(4, 6))])
                             for _ in range(rng.randint(5, 8))]
    body_a = "\n".join(block_text(b) for b in blocks_a)
    target = rng.uniform(*PAIR_JACCARD[kind])
    if kind == "far":
        body_b, _ = labelled_prose.far_pair(rng, body_a, target, site_a.lang,
                                             sentence=article_sentences(rng, pack))
        title_b, date_b, byline_b = _news_header(rng, site_b)
    else:
        paragraphs_b, _ = labelled_prose.near_duplicate_sentences(
            rng, [items for _, items in blocks_a], target, article_sentences(rng, pack), pack_phrase_groups(site_a.lang))
        title_b, date_b, byline_b = title, date, byline
        body_b = "\n".join(" ".join(p) for p in paragraphs_b if p)
    blocks_b = _line_blocks(body_b)
    jaccard = labelled_prose.shingle_jaccard(article_text(title, byline, blocks_a),
                                              article_text(title_b, byline_b, blocks_b))
    label = PAIR_LABELS[kind]
    return (PageContent(site_a, title, date, byline, blocks_a,
                        page_labels(label, pair_id=pair_id, pair_member=0, jaccard=jaccard)),
            PageContent(site_b, title_b, date_b, byline_b, blocks_b,
                        page_labels(label, pair_id=pair_id, pair_member=1, jaccard=jaccard)))


def pair_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    return pair_contents(config, role.index)[role.member]


def spam_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A spam page of kind ``SPAM_KINDS[role.index]`` on a spam site: one paragraph per line."""
    kind = SPAM_KINDS[role.index]
    site = rng.choice(SPAM_SITES)
    title = " ".join(rng.choice(labelled_pages.SPAM_WORDS) for _ in range(rng.randint(3, 6))).title()
    date = make_date(rng, LANGUAGE_PACKS[site.lang])
    text = labelled_pages.SPAM_GENERATORS[kind](rng, site.lang)
    return PageContent(site, title, date, "", _line_blocks(text),
                       page_labels(f"spam:{kind.removeprefix('spam_')}"))


PII_PER_PAGE = 2        # planted PII strings (distinct types) per PII page
LOOKALIKES_PER_PAGE = 2  # planted PII look-alikes per PII page


def pii_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A news article of natural length (as ``make_article``) in its site's language with
    ``PII_PER_PAGE`` planted PII strings and ``LOOKALIKES_PER_PAGE`` look-alikes, each in
    parentheses at the end of a natural sentence of the site (a reporter's email, a phone
    number, ...): apart from the planted strings the page reads like the site's other pages."""
    site = rng.choice(news_sites(config))
    pack = LANGUAGE_PACKS[site.lang]
    title, date, byline = _news_header(rng, site)
    sentence = article_sentences(rng, pack)
    n = sum(rng.randint(*config.sentences_per_paragraph) for _ in range(rng.randint(*config.paragraphs)))
    sentences, planted, looks = labelled_pii.pii_sentences(
        rng, site.lang, PII_PER_PAGE, LOOKALIKES_PER_PAGE, sentence=sentence,
        lookalike_kinds=CRAWL_LOOKALIKE_KINDS, n_sentences=max(1, n - PII_PER_PAGE - LOOKALIKES_PER_PAGE),
        frame=labelled_pii.parenthetical_frame(sentence))
    return PageContent(site, title, date, byline, _paragraph_blocks(rng, sentences),
                       page_labels("pii", pii_items=json.dumps([list(p) for p in planted]),
                                   lookalikes=json.dumps([list(x) for x in looks])))


CODE_TITLES = ("Python snippet {n}: totals in a loop", "How to build a lookup table in {n} lines of Python",
               "Small helpers for indexed totals, part {n}", "A {n}-step loop that fills a dictionary")
CODE_PROSE = (
    "The functions below walk over the first {n} items and store each result in a dictionary.",
    "We keep the loop simple on purpose, because {n} iterations are enough for this example.",
    "Each helper returns a new dictionary instead of changing its input, which makes testing easier.",
    "Run the snippet with Python 3.{n} or newer; it needs nothing outside the standard library.",
    "If you need more than {n} values, pass a larger n instead of editing the loop.",
    "The hexadecimal constant only shifts every value by a small offset of at most {n} hundred.",
)


def _code_prose(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(CODE_PROSE).format(n=rng.randint(2, 12)) for _ in range(count)]


def code_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A code tutorial on a code site: prose, a <pre><code> block of Python, prose."""
    site = rng.choice(CODE_SITES)
    pack = LANGUAGE_PACKS[site.lang]
    title = rng.choice(CODE_TITLES).format(n=rng.randint(2, 12))
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    code = labelled_pages.code_page(rng).rstrip("\n").split("\n")
    blocks = [("p", _code_prose(rng, rng.randint(2, 3))), ("code", code), ("p", _code_prose(rng, rng.randint(1, 2)))]
    return PageContent(site, title, date, byline, blocks, page_labels("code"))


MATH_TITLES = ("Solving {a}x + {b} = 0 step by step", "Eigenvalues of a {a} by {a} matrix",
               "The integral of x^{b} from 0 to {a}", "Why every prime p > {a} divides p^{b} - p",
               "A short proof about n^2 = {c}")


def math_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A math page (LaTeX in $...$ mixed with English prose) on one of the math sites."""
    site = rng.choice(MATH_SITES[:config.math_domains])
    pack = LANGUAGE_PACKS[site.lang]
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    title = rng.choice(MATH_TITLES).format(a=a, b=b, c=a * a)
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    text = labelled_pages.math_page(rng, sentence=article_sentences(rng, pack))
    return PageContent(site, title, date, byline, _line_blocks(text), page_labels("math"))


# Cross-site notices (syndication, newsletter, disclaimer, copyright) in each language; {o} an
# object phrase, {p} a place phrase, {a} an adjective of the site's pack (the packs are parallel,
# so pool entry k is the same notice on every site, in the site's language). Each >= 12 words.
BOILERPLATE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("This report on {o} {p} was prepared with material from the regional news agency and updated later.",
           "Subscribe to our weekly newsletter to receive every update on {o} and other {a} stories from the region.",
           "All information about {o} on this page is provided without guarantee and does not replace legal advice.",
           "Copyright notice: our reports on {o} {p} and all related photographs are protected by law."),
    "de": ("Dieser Bericht \u00fcber {o} {p} entstand mit Material der regionalen Nachrichtenagentur und wurde sp\u00e4ter aktualisiert.",
           "Abonnieren Sie unseren w\u00f6chentlichen Newsletter f\u00fcr alle Neuigkeiten \u00fcber {o} und andere {a} Geschichten aus der Region.",
           "Alle Angaben zu {o} auf dieser Seite erfolgen ohne Gew\u00e4hr und ersetzen keine rechtliche Beratung.",
           "Urheberrecht: unsere Berichte \u00fcber {o} {p} und alle zugeh\u00f6rigen Fotos sind gesetzlich gesch\u00fctzt."),
    "fr": ("Cet article sur {o} {p} a \u00e9t\u00e9 r\u00e9dig\u00e9 avec des informations de l'agence de presse r\u00e9gionale puis mis \u00e0 jour.",
           "Abonnez-vous \u00e0 notre lettre hebdomadaire pour suivre toute l'actualit\u00e9 sur {o} et d'autres sujets de la r\u00e9gion.",
           "Toutes les informations sur {o} de cette page sont fournies sans garantie et ne remplacent pas un conseil juridique.",
           "Droits d'auteur : nos articles sur {o} {p} et toutes les photos associ\u00e9es sont prot\u00e9g\u00e9s par la loi."),
    "es": ("Este informe sobre {o} {p} se elabor\u00f3 con material de la agencia regional de noticias y se actualiz\u00f3 despu\u00e9s.",
           "Suscr\u00edbase a nuestro bolet\u00edn semanal para recibir todas las novedades sobre {o} y otras historias de la regi\u00f3n.",
           "Toda la informaci\u00f3n sobre {o} de esta p\u00e1gina se ofrece sin garant\u00eda y no sustituye un asesoramiento legal.",
           "Derechos de autor: nuestros informes sobre {o} {p} y todas las fotos relacionadas est\u00e1n protegidos por la ley."),
}


@lru_cache(maxsize=64)
def boilerplate_pool(config: SyntheticCrawlConfig) -> tuple[tuple[int, int, int, int], ...]:
    """The ``boilerplate_pool`` shared cross-site notices of this crawl, as distinct
    ``(template, object, place, adjective)`` indices; ``boilerplate_sentence`` writes one in a language."""
    rng, pack = seeded_rng(config, "boilerplate-pool"), LANGUAGE_PACKS["en"]
    specs: list[tuple[int, int, int, int]] = []
    while len(specs) < config.boilerplate_pool:
        spec = (len(specs) % len(BOILERPLATE_TEMPLATES["en"]), rng.randrange(len(pack.objects)),
                rng.randrange(len(pack.places)), rng.randrange(len(pack.adjectives)))
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)


def boilerplate_sentence(spec: tuple[int, int, int, int], lang: str) -> str:
    """Shared notice ``spec`` (an entry of ``boilerplate_pool``) in language ``lang``."""
    template, o, p, a = spec
    pack = LANGUAGE_PACKS[lang]
    return BOILERPLATE_TEMPLATES[lang][template].format(o=pack.objects[o], p=pack.places[p], a=pack.adjectives[a])


def boilerplate_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A natural article with 1-2 shared notices of ``boilerplate_pool`` (in the site's language)
    inserted into its paragraphs; a quarter of them with one word changed to a word of the site's
    pack (``edited``), the rest normalisation-level variants (case, punctuation, spacing)."""
    content = natural_content(config, role, rng)
    pool = boilerplate_pool(config)
    items = []
    for k in rng.sample(range(len(pool)), min(len(pool), rng.randint(1, 2))):
        edited = rng.random() < 0.25
        sentence = boilerplate_sentence(pool[k], content.site.lang)
        text = " ".join(labelled_pages.boilerplate_variant(
            rng, sentence, edited, vocabulary=pack_vocabulary(content.site.lang)).split())
        paragraph = content.blocks[rng.randrange(len(content.blocks))][1]
        paragraph.insert(rng.randrange(len(paragraph) + 1), text)
        items.append([k, text, edited])
    content.labels = page_labels("boilerplate", boilerplate_items=json.dumps(items))
    return content


@lru_cache(maxsize=64)
def crawl_eval_items(seed: int, n: int) -> tuple[str, ...]:
    return tuple(eval_items.eval_items(seed, n))


def contaminated_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A natural article on an English news site (the evaluation items are English) with
    evaluation item ``role.index`` as a paragraph of its own."""
    content = natural_content(config, role, rng)
    english = [s for s in news_sites(config) if s.lang == "en"]
    if english and content.site.lang != "en":
        content = natural_content_on(config, rng.choice(english), rng)
    item = crawl_eval_items(config.seed, config.eval_pool)[role.index]
    content.blocks.insert(rng.randrange(len(content.blocks) + 1), ("p", [item]))
    content.labels = page_labels("contaminated", eval_item=role.index)
    return content


ROLE_CONTENT = {"natural": natural_content, "near_high": pair_content, "near_mid": pair_content,
                "far": pair_content, "spam": spam_content, "pii": pii_content, "code": code_content,
                "math": math_content, "boilerplate": boilerplate_content,
                "contaminated": contaminated_content}


def assemble_page(config: SyntheticCrawlConfig, page_id: int, rng: random.Random, content: PageContent) -> Page:
    """Put ``content`` into the site's page shell (cookie banner, navigation, sidebar, share bar,
    footer) and pick the page's charset; ``rng`` draws the sidebar and the charset."""
    site, title, date, byline, blocks = content.site, content.title, content.date, content.byline, content.blocks
    pack = LANGUAGE_PACKS[site.lang]
    nav, nav_lines = make_nav(site, pack)
    cookie, cookie_lines = make_cookie_banner(site, pack)
    sidebar, sidebar_lines = make_sidebar(rng, site, pack, title)
    share, share_lines = make_share_bar(pack)
    footer, footer_lines = make_footer(site, pack, date[0])

    charset = "utf-8"
    if rng.random() < config.legacy_charset_rate:
        charset = rng.choice(("windows-1252-header", "windows-1252-meta", "windows-1252-none"))
    head_extra = {"utf-8": '<meta charset="utf-8">',
                  "windows-1252-meta": '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
                  }.get(charset, "")
    main = f'<main id="content">{make_blocks_html(title, byline, blocks)}\n{share}</main>'
    document = make_html_document(site, site.lang, title, head_extra,
                                  [cookie, nav, '<div class="layout">', main, sidebar, "</div>", footer])
    sentences = [line for tag, items in blocks for line in items if tag == "p" or line.strip()]
    return Page(page_id=page_id, site=site, url=canonical_url(site, pack, page_id, title, date),
                title=title, article_sentences=sentences,
                boilerplate_lines=nav_lines + cookie_lines + sidebar_lines + share_lines + footer_lines,
                html=document, charset=charset, paragraphs=[items for tag, items in blocks if tag == "p"],
                blocks=blocks, byline=byline, labels=content.labels)


def render_page(config: SyntheticCrawlConfig, page_id: int) -> Page:
    """Generate page ``page_id`` (natural or labelled, by ``page_role``); a pure function of
    ``(config, page_id)``."""
    rng = seeded_rng(config, "page", page_id)
    role = page_role(config, page_id)
    return assemble_page(config, page_id, rng, ROLE_CONTENT[role.kind](config, role, rng))


def render_natural_page(config: SyntheticCrawlConfig, page_id: int) -> Page:
    """The natural news article of ``page_id`` whatever its slot holds in the crawl: for trusted
    reference texts, which must never contain spam, PII or eval items."""
    rng = seeded_rng(config, "page", page_id)
    return assemble_page(config, page_id, rng, natural_content(config, NATURAL, rng))


def encode_page(page: Page) -> tuple[bytes, str]:
    """(HTTP body bytes, Content-Type header value) for the page's charset choice."""
    if page.charset == "utf-8":
        return page.html.encode("utf-8"), "text/html; charset=UTF-8"
    body = page.html.encode("windows-1252", errors="xmlcharrefreplace")
    # Servers commonly label windows-1252 as ISO-8859-1; browsers (and ingest) treat them alike.
    return body, ("text/html; charset=ISO-8859-1" if page.charset == "windows-1252-header" else "text/html")



# ----------------------------------------------------------------------------- crawl planning

def slot_kind(config: SyntheticCrawlConfig, file_index: int, slot: int) -> str:
    """'original' | 'exact_dup' | 'url_variant' for page slot ``slot`` of file ``file_index``."""
    u = seeded_rng(config, "slot", file_index, slot).random()
    if u < config.exact_dup_rate:
        return "exact_dup"
    if u < config.exact_dup_rate + config.url_variant_rate:
        return "url_variant"
    return "original"


def slot_page_id(config: SyntheticCrawlConfig, file_index: int, slot: int) -> int:
    """Global page id of an original slot (unique across the crawl)."""
    return file_index * config.pages_per_file + slot


def source_page_id(config: SyntheticCrawlConfig, file_index: int, slot: int) -> int:
    """For a duplicate / variant slot, the page id of a natural original slot anywhere in the
    crawl (labelled pages are never copied, so each labelled document occurs once)."""
    rng = seeded_rng(config, "source", file_index, slot)
    while True:
        f, s = rng.randrange(config.num_files), rng.randrange(config.pages_per_file)
        if slot_kind(config, f, s) == "original" and s not in file_roles(config, f):
            return slot_page_id(config, f, s)

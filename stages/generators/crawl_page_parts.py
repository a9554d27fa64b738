"""The parts of a generated news page, one function each: article sentences, headline and
body, date, navigation, cookie banner, sidebar, footer, share bar, the HTML shell and the
canonical URL. Each part returns its markup and the strings it shows."""
from __future__ import annotations

import html
import random
from urllib.parse import quote

from deeprecipe.stages.generators import labelled_prose
from deeprecipe.stages.generators.crawl_languages import LanguagePack
from deeprecipe.stages.generators.crawl_spec import (Block, Site, SyntheticCrawlConfig, block_text, capitalised,
                                                     slugify)


class Deck:
    """Deals the items of a sequence in a shuffled order and reshuffles once all were dealt: an
    article repeats no sentence template or place before it used every other one (so its text
    keeps few repeated word 5-grams, as Gopher's repetition rules expect of real prose)."""

    def __init__(self, rng: random.Random, items):
        self.rng, self.items, self.queue = rng, list(items), []

    def draw(self):
        if not self.queue:
            self.queue = list(self.items)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def make_sentence(rng: random.Random, pack: LanguagePack, templates: Deck | None = None,
                  places: Deck | None = None) -> str:
    """One article sentence filled from the language pack; template and place come from the
    article's decks when given, else are drawn independently."""
    s, s2 = rng.sample(pack.subjects, 2)
    o, o2 = rng.sample(pack.objects, 2)
    slots = {"s": s, "S": capitalised(s), "s2": s2, "o": o, "O": o, "O2": o2,
             "V": rng.choice(pack.verbs), "V2": rng.choice(pack.verbs),
             "A": rng.choice(pack.adjectives), "P": places.draw() if places else rng.choice(pack.places),
             "C": rng.choice(pack.connectors), "N": rng.choice(pack.names),
             "Y": rng.randint(1990, 2024), "D": rng.randint(5, 95)}
    template = templates.draw() if templates else rng.choice(pack.sentence_templates)
    return capitalised(template.format(**slots))


def article_sentences(rng: random.Random, pack: LanguagePack) -> labelled_prose.SentenceFn:
    """A sentence source for one article: ``make_sentence`` with the article's own decks."""
    templates, places = Deck(rng, pack.sentence_templates), Deck(rng, pack.places)
    return lambda r: make_sentence(r, pack, templates, places)


def make_title(rng: random.Random, pack: LanguagePack) -> str:
    s = rng.choice(pack.subjects)
    o = rng.choice(pack.objects)
    return capitalised(rng.choice(pack.title_templates).format(
        S=capitalised(s), V=rng.choice(pack.verbs), O=capitalised(o), o=o, A=rng.choice(pack.adjectives),
        N=rng.choice(pack.names), P=rng.choice(pack.places)))


def make_article(rng: random.Random, pack: LanguagePack, config: SyntheticCrawlConfig
                 ) -> tuple[str, list[list[str]]]:
    """(title, paragraphs as lists of sentences)."""
    title = make_title(rng, pack)
    sentence = article_sentences(rng, pack)
    paragraphs = [[sentence(rng) for _ in range(rng.randint(*config.sentences_per_paragraph))]
                  for _ in range(rng.randint(*config.paragraphs))]
    return title, paragraphs


def make_date(rng: random.Random, pack: LanguagePack) -> tuple[int, int, int, str]:
    year, month, day = rng.randint(2019, 2024), rng.randint(1, 12), rng.randint(1, 28)
    return year, month, day, f"{day} {pack.months[month - 1]} {year}"


def make_nav(site: Site, pack: LanguagePack) -> tuple[str, list[str]]:
    """Site navigation menu: (html, visible strings)."""
    items = "".join(f'<li><a href="/{slugify(label)}/">{html.escape(label)}</a></li>'
                    for label in pack.nav_labels)
    markup = (f'<header class="site-header"><a class="logo" href="/">{html.escape(site.name)}</a>'
              f'<nav class="main-nav" role="navigation"><ul>{items}</ul></nav></header>')
    return markup, [site.name, *pack.nav_labels]


def make_cookie_banner(site: Site, pack: LanguagePack) -> tuple[str, list[str]]:
    text = pack.cookie_text.format(site=site.name)
    accept, settings = pack.cookie_buttons
    markup = (f'<div id="cookie-banner" class="cookie-consent cookie-notice"><p>{html.escape(text)}</p>'
              f'<button class="accept">{html.escape(accept)}</button>'
              f'<button class="settings">{html.escape(settings)}</button></div>')
    return markup, [text, accept, settings]


def make_sidebar(rng: random.Random, site: Site, pack: LanguagePack, page_title: str
                 ) -> tuple[str, list[str]]:
    """'Most read' box with four headlines of other (fictitious) pages of the site, all different
    from ``page_title`` (so boilerplate and article never share a string)."""
    heading = pack.sidebar_heading.format(site=site.name)
    titles: list[str] = []
    while len(titles) < 4:
        title = make_title(rng, pack)
        if title != page_title and title not in titles:
            titles.append(title)
    items = "".join(f'<li><a href="/{pack.section_slug}/{slugify(t)}">{html.escape(t)}</a></li>'
                    for t in titles)
    markup = (f'<aside class="sidebar widget-popular"><h3>{html.escape(heading)}</h3>'
              f'<ol>{items}</ol></aside>')
    return markup, [heading, *titles]


def make_footer(site: Site, pack: LanguagePack, year: int) -> tuple[str, list[str]]:
    lines = [line.format(site=site.name, year=year, street=site.street) for line in pack.footer_lines]
    markup = ('<footer class="site-footer">' + "".join(f"<p>{html.escape(line)}</p>" for line in lines)
              + "</footer>")
    return markup, lines


def make_share_bar(pack: LanguagePack) -> tuple[str, list[str]]:
    markup = (f'<div class="share-bar social"><span>{html.escape(pack.share_text)}</span>'
              '<a href="#">Facebook</a> <a href="#">X</a> <a href="#">WhatsApp</a></div>')
    return markup, [pack.share_text]



def make_blocks_html(title: str, byline: str, blocks: list[Block]) -> str:
    """The <article>: headline, byline (omitted when ''), <p> per paragraph, <pre><code> per code block."""
    body = "".join(f"<pre><code>{html.escape(block_text(b))}</code></pre>" if b[0] == "code"
                   else f"<p>{html.escape(block_text(b))}</p>" for b in blocks)
    byline_html = f'<p class="byline">{html.escape(byline)}</p>' if byline else ""
    return f'<article class="post"><h1>{html.escape(title)}</h1>{byline_html}{body}</article>'


def make_article_html(title: str, byline: str, paragraphs: list[list[str]]) -> str:
    return make_blocks_html(title, byline, [("p", p) for p in paragraphs])


def make_html_document(site: Site, lang: str, title: str, head_extra: str, parts: list[str]) -> str:
    """The page shell: head with title, analytics script and style; ``parts`` in body order."""
    return ("<!DOCTYPE html>\n"
            f'<html lang="{lang}"><head>{head_extra}<title>{html.escape(title)} | {html.escape(site.name)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<style>body{font-family:sans-serif}.cookie-consent{position:fixed;bottom:0}</style>'
            f'<script>window.dataLayer=[];dataLayer.push({{"site":"{site.host}"}});</script>'
            "</head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def canonical_url(site: Site, pack: LanguagePack, page_id: int, title: str, date: tuple) -> str:
    """The page's canonical URL, in the site's URL style. Contains page_id, so pages never collide."""
    year, month = date[0], date[1]
    slug = f"{slugify(title)}-{page_id}"
    base = f"{site.scheme}://{site.host}"
    if site.url_style == "dated":
        return f"{base}/{pack.section_slug}/{year}/{month:02d}/{slug}"
    if site.url_style == "html":
        return f"{base}/{pack.section_slug}/{slug}.html"
    if site.url_style == "unicode":  # non-ASCII section name, percent-encoded as UTF-8
        return f"{base}/{quote(pack.section_slug)}/{slug}"
    if site.url_style == "query":
        return f"{base}/index.php?id={page_id}&section={pack.section_slug}"
    if site.url_style == "slash":
        return f"{base}/{year}/{month:02d}/{slug}/"
    if site.url_style == "section":  # one fixed first path segment per site
        return f"{base}/{site.section}/{slug}"
    raise ValueError(f"unknown url_style {site.url_style!r}")


"""Contact contexts for ``pii_redact``: person names, street addresses and national-format
phone numbers, found where a page says whom to reach (contact blocks, signatures, comment
authors, "Contact: ...") rather than anywhere in running prose.

A name is a run of capitalised tokens (particles such as ``von``/``de`` and initials allowed)
at a position a contact cue points to, accepted when its first token is a given name of the
gazetteer shipped with ``gender-guesser`` (Jörg Michael's ``nam_dict``: ~45,000 one-word first
names from Europe, Asia, the Americas and Africa) or when an honorific or initial precedes it,
and rejected when a token is an organisation or common word (``Team``, ``Service``, ``GmbH``,
...). Slots that hold a name whatever its origin ("Name:", "X <email>" on a short line,
"X says:", the line after a closing) skip the gazetteer (``policy="strong_slots"``).
``names_anywhere`` (``pii_redact``'s ``names="all"``, what ``--PiiRedact-keep-public-names
false`` asks for) also takes bylines, honorific + name, and gazetteer-confirmed names of two or
more tokens in running prose.

``bench/pii.py`` measures this detector against the alternatives (gazetteer anywhere, other
gazetteers, context without the gazetteer, ``probablepeople``'s CRF on context runs);
BENCHMARKS.md has the numbers and why this one is the default.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

Span = tuple[int, int]

# ---------------------------------------------------------------------------------------------
# gazetteer
# ---------------------------------------------------------------------------------------------

# capitalised words that are also given names in nam_dict, too common as ordinary words at the
# start of a contact line ("Will", "May", "The" ...) to count as evidence of a name on their own
_NOT_GIVEN = frozenset("""
The A An And Or Our Your My All Any For From With Please Contact Kontakt Name Phone Tel Email Mail
Fax Web Best Kind Many Thanks Thank Regards Cheers Warm Dear Hello Hi Will May June April August
Summer Winter Autumn Spring Sunny Page Art Justice Royal Major King Prince Sky Star Bill Rich Long
Young White Black Brown Green Gray Grey North South West East New Great Viele Liebe Beste Herzliche
Service Team Office Help Info News Press Media Der Die Das Le La Les Il El Los Das Ein Eine Un Une
Mit Von Par Por By Sent Reply Posted Written Author Autor Auteur
""".split())


@functools.lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """First names of the gazetteer that ships with ``gender-guesser`` (single words only)."""
    from gender_guesser.detector import Detector
    names = Detector(case_sensitive=True).names
    return frozenset(n for n in names if n.isalpha() and n[0].isupper() and len(n) > 1) - _NOT_GIVEN


# ---------------------------------------------------------------------------------------------
# name runs
# ---------------------------------------------------------------------------------------------

_UP = "A-ZÀ-ÖØ-ÞĀ-ſ"
_LO = "a-zß-öø-ÿĀ-ſ"
_TOKEN = rf"[{_UP}](?:(?:['’][{_UP}])?[{_LO}]+(?:[{_UP}][{_LO}]+)?(?:['’-][{_UP}{_LO}][{_LO}]+)*|\.)"
_PARTICLE = r"(?:von|van|der|den|de|da|di|du|del|della|dos|das|le|la|ter|zu|bin|ibn|al|y)"
HONORIFIC = (r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Hr|Fr|Mme|Mlle|Sr|Sra|Dña|Ing|Dipl\.-Ing)\.?|Herr|Frau|Miss|Sir|Dame"
             r"|Monsieur|Madame|Mademoiselle|Señor|Señora|Dott\.?|Shri|Smt\.?|M\.)")
_HONORIFIC_WORD = re.compile(HONORIFIC)
_RUN = re.compile(rf"(?:(?P<hon>{HONORIFIC}(?:\s+(?:Dr\.|Prof\.))?)[ \t]+)?"
                  rf"(?P<name>{_TOKEN}(?:[ \t]+(?:{_PARTICLE}[ \t]+)*{_TOKEN}){{0,3}})(?![\w@])")

# words that make a capitalised run an organisation, a place or a heading rather than a person
ORG_WORDS = frozenset("""
Team Teams Service Services Support Department Dept Office Press Presse Presseteam Redaktion Editorial
Desk Center Centre University Universität Université School College Bank Hotel Restaurant Museum
City Council Street St Road Rd Avenue Ave Straße Strasse Str Rue Platz Allee Weg Media Marketing Sales
Info Information Administration Verwaltung Sekretariat Kundenservice Kundendienst Club Verein
Association Foundation Stiftung Institute Institut Ministry Ministerium Agency Amt Group Gruppe
Company Inc Ltd LLC GmbH AG KG SA SAS SARL Corp Corporation Co Customer Customers Store Shop
Library Hospital Clinic Klinik Church Kirche Airport Station Park Valley River Lake Mountain Island
Communications Relations Public Newsroom Headquarters Management Board Committee Staff Desk HR
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April June July
August September October November December Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag
Reply Antworten Répondre Comments Kommentare Share Teilen Like Login Newsletter Impressum Datenschutz
""".split())


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[ \t]+", name) if not re.fullmatch(_PARTICLE, t)]


def name_at(text: str, pos: int, need_given: bool = True, single_ok: bool = False,
            given: frozenset[str] | None = None) -> Span | None:
    """The person-name run starting at ``pos`` (after spaces), or None. ``need_given``: the first
    token must be a gazetteer given name unless an honorific precedes; ``single_ok``: a lone given
    name counts (signatures: "Best, Anna")."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    m = _RUN.match(text, pos)
    if not m:
        return None
    toks = _tokens(m.group("name"))
    if any(t in ORG_WORDS or t.isupper() and len(t) > 1 and not t.endswith(".") for t in toks):
        return None
    words = [t for t in toks if not t.endswith(".")]
    if not words:
        return None
    hon = m.group("hon") is not None or (len(toks[0]) == 2 and toks[0].endswith(".") and len(toks) > 1)
    given = given_names() if given is None else given
    if len(words) == 1 and not (hon or single_ok):
        return None
    if need_given and not hon and words[0] not in given:
        return None
    if words[0] in _NOT_GIVEN:
        return None
    end = m.end("name")
    if text[end - 1] == ".":  # a trailing initial-like dot that ends the sentence
        end -= 1
    return (m.start(), end)


# ---------------------------------------------------------------------------------------------
# contact cues
# ---------------------------------------------------------------------------------------------

_FREE_LABEL = re.compile(  # a name follows after a colon, or directly when capitalised
    r"(?i)(?<![\w-])(?:contact(?:\s+person)?|press\s+contact|media\s+contact|contacts?|kontakt(?:person)?"
    r"|ansprechpartner(?:in)?|ansprechperson|pressekontakt|interlocut(?:eur|rice)|contacto|persona\s+de\s+contacto"
    r"|posted\s+by|submitted\s+by|comment\s+by|reply\s+from|kommentar\s+von|commentaire\s+de|sent\s+by)"
    r"(?:[ \t]*[:：][ \t]*(?:\r?\n[ \t]*)?|[ \t]+(?=(?:" + HONORIFIC + r"[ \t]+)?[A-ZÀ-ÖØ-Þ]))")
_AND = re.compile(r"[ \t]*(?:,|;|&|\band\b|\bund\b|\bet\b|\by\b|\be\b)[ \t]*")
_FREE_GATE = ("contact", "kontakt", "ansprech", "interlocut", "posted by", "submitted by", "comment by", "reply from",
              "kommentar von", "commentaire de", "sent by")
# ordinary words that are labels only before a colon ("Name: ...", "Von: ...")
_COLON_LABEL = re.compile(r"(?i)(?<![\w-])(name|nom|from|von|de|contacts|organi[sz]er|veranstalter|responsable"
                          r"|verantwortlich)[ \t]*$")
_AFTER_COLON = re.compile(r"[ \t]*(?:\r?\n[ \t]*)?")


def label_slots(text: str) -> list[tuple[str, int]]:
    """``(label, end)`` of each contact label: where a name may start."""
    out = []
    low = text.lower()
    if any(g in low for g in _FREE_GATE):
        out += [(m.group(), m.end()) for m in _FREE_LABEL.finditer(text)]
    for colon in (":", "："):
        i = text.find(colon)
        while i >= 0:
            m = _COLON_LABEL.search(text, max(0, i - 20), i)
            if m:
                out.append((m.group(1), _AFTER_COLON.match(text, i + 1).end()))
            i = text.find(colon, i + 1)
    return out


_CLOSING = re.compile(
    r"(?im)^[ \t]*(?:best(?:\s+wishes|\s+regards)?|kind(?:est)?\s+regards|warm(?:est)?\s+regards|regards"
    r"|sincerely(?:\s+yours)?|yours(?:\s+(?:sincerely|truly|faithfully))?|cheers|thanks(?:\s+again)?|thank\s+you"
    r"|many\s+thanks|all\s+the\s+best|mit\s+freundlichen\s+gr(?:ü|ue)(?:ß|ss)en|freundliche\s+gr(?:ü|ue)(?:ß|ss)e"
    r"|(?:ganz\s+)?(?:(?:viele|beste|liebe|lieben|herzliche|herzlichen|schöne|sonnige)\s+)?gr(?:ü|ue|u)(?:ß|ss)(?:e|en)?"
    r"|cordialement|bien\s+cordialement|bien\s+à\s+vous|salutations\s+distinguées|amicalement|bisous"
    r"|atentamente|saludos(?:\s+cordiales)?|un\s+saludo|atenciosamente|cumprimentos|--)"
    r"[ \t]*[,!.]?[ \t]*(?:\r?\n[ \t]*)?")

_WINDOW_LABEL = re.compile(
    r"(?im)^[ \t]*(?:press\s+contact|media\s+contact|contact(?:\s+presse)?|kontakt|pressekontakt|ansprechpartner(?:in)?"
    r"|contacto|name|nom)\b[ \t]*[:：]?")

_SAYS = re.compile(r"(?m)[ \t]+(?:says|said|wrote|writes|replied|commented|schrieb|sagt|meint|antwortete"
                   r"|a\s+écrit|a\s+dit|escribió|comentó)[ \t]*:")
_COMMENT_DATE = re.compile(r"(?m)[ \t]*(?:[|·•–—-][ \t]*|[ \t]+(?:on|am|le|el)[ \t]+)"
                           r"(?:\d{1,2}[./ ]|\d{4}-|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?[ \t]+\d)")
_MONTHS = (r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Januar|Februar|März|Mai|Juni|Juli|Okt|Dez"
           r"|janv|févr|mars|avr|mai|juin|juil|août|sept|oct|nov|déc)[a-zéû]*\.?")
_DATE_LINE = re.compile(rf"[ \t]*(?:{_MONTHS}[ \t]+\d{{1,2}},?[ \t]+\d{{4}}|\d{{1,2}}\.?[ \t]+{_MONTHS}[ \t]+\d{{4}}"
                        r"|\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4})")
_LIST_MARK = re.compile(r"[ \t]*(?:[•*·▪◦–-]|\d{1,3}[.)])?[ \t]*")
_REPLY = re.compile(r"(?i)(?<![\w])(?:reply|antworten|antwort|répondre|responder|rispondi|beantworten)(?![\w])")


def _near_reply(text: str, start: int, end: int) -> bool:
    """A reply link within 200 chars before or 400 after: the block is a comment."""
    return _REPLY.search(text, max(0, start - 200), min(len(text), end + 400)) is not None


_CONTACT_LINE = re.compile(
    r"(?i)(?<![\w-])(?:tel|tél|telefon|telephone|téléphone|phone|fon|fax|mobil|mobile|mob|handy|cell|celular|portable"
    r"|call\s+us|ring\s+us|e-?mail|courriel|mail|web|www)\b")
_BYLINE = re.compile(r"(?m)^[ \t]*(?:By|Von|Par|Por|Author:|Autor:|Auteur\s?:|Written by|Text:)[ \t]+")

# --- national phone numbers after a phone label, and street addresses -----------------------
_PHONE_LABEL = re.compile(
    r"(?i)(?<![\w-])(?:(?:call(?:[ \t]+us)?(?:[ \t]+(?:on|at))?|ring(?:[ \t]+us)?(?:[ \t]+on)?|telephone|téléphone|telefon"
    r"|tel|tél|phone|fon|fax|mobile|mobil|mob|handy|cell|celular|portable|tlf|ph"
    r"|電話|电话)\.?(?![\w])(?:[ \t]*(?:no\.?|nr\.?|number))?[ \t]*[:.]?|[tmf][ \t]*:)[ \t]*"
    r"|(?<=[,:|])[ \t]+|^[ \t]*", re.M)
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}")
_NATIONAL_PHONE = re.compile(r"\(?0\d{1,5}\)?(?:(?:[ ./-]|[ ]?/[ ]?)?\d{2,5}){1,4}(?![\w]|[.,/:\-]\d)")

_STREET_EN = (r"(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.|Way|Court|Ct\.?"
              r"|Place|Pl\.|Square|Sq\.|Terrace|Close|Crescent|Highway|Hwy\.?|Parkway|Pkwy\.?)")
_ADDRESS = re.compile(
    # 221B Baker Street, Suite 4, London NW1 6XE | 1600 Amphitheatre Parkway, Mountain View, CA 94043
    rf"(?:\b\d{{1,5}}[A-Za-z]?(?:[ \t]+[{_UP}][{_LO}]+){{1,3}}[ \t]+{_STREET_EN}(?![\w])|\bP\.?[ ]?O\.?[ \t]+Box[ \t]+\d{{1,6}})"
    r"(?:,?[ \t]*(?:Suite|Ste\.?|Apt\.?|Unit|Floor|Fl\.?)[ \t]*\w+)?"
    rf"(?:(?:,[ \t]*|[ \t]*\r?\n)[{_UP}][{_LO}]+(?:[ \t][{_UP}][{_LO}]+)?(?:,?[ \t]*(?:[A-Z]{{2}}[ \t]+\d{{5}}(?:-\d{{4}})?"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}))?)?"
    # Hauptstraße 5a, 10115 Berlin | Am Markt 3 | Rue-less German/Dutch forms
    rf"|\b[{_UP}][{_LO}-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|laan|straat|gracht)"
    rf"(?:[ \t]+\d{{1,4}}[a-z]?(?:[-/]\d{{1,4}})?)(?:(?:,?[ \t]*|\r?\n)(?:DE?-|A-|AT-|CH-)?\d{{4,5}}[ \t]+[{_UP}][{_LO}]+(?:[ \t][{_UP}]?[{_LO}]+)?)?"
    rf"|\b(?:[{_UP}][{_LO}]+[ \t]){{1,2}}(?:Straße|Strasse|Str\.|Weg|Platz|Allee)[ \t]+\d{{1,4}}[a-z]?"
    rf"(?:(?:,?[ \t]*|\r?\n)(?:DE?-|A-|AT-|CH-)?\d{{4,5}}[ \t]+[{_UP}][{_LO}]+(?:[ \t][{_UP}]?[{_LO}]+)?)?"
    # 12 bis, rue de la Paix, 75002 Paris | 3 avenue Foch
    rf"|\b\d{{1,4}}(?:[ \t]?(?:bis|ter))?,?[ \t]+(?:rue|avenue|av\.|boulevard|bd|place|allée|chemin|impasse|quai|cours"
    rf"|calle|avenida|rua|via|piazza)[ \t]+(?:(?:de|du|des|la|le|l['’]|del|da|dos|das)[ \t]*)*[{_UP}][{_LO}'’-]+"
    rf"(?:[ \t][{_UP}][{_LO}'’-]+)*(?:,?[ \t]*\d{{5}}[ \t]+[{_UP}][{_LO}]+)?"
    rf"|\b(?:[Cc]alle|[Aa]venida|[Rr]ua|[Vv]ia|[Pp]iazza)[ \t]+(?:(?:de|del|da|dos|das|di)[ \t]+)*[{_UP}][{_LO}]+(?:[ \t][{_UP}][{_LO}]+)*,?[ \t]+\d{{1,4}}"
    rf"(?:,?[ \t]*\d{{5}}(?:-\d{{3}})?[ \t]+[{_UP}][{_LO}]+)?")


SHORT_LINE = 200  # longer lines are prose paragraphs: no contact block, closing or comment header


def short_lines(text: str) -> list[Span]:
    """(start, end) of the lines of at most ``SHORT_LINE`` characters."""
    out, pos, n = [], 0, len(text)
    while pos <= n:
        e = text.find("\n", pos)
        e = n if e < 0 else e
        if 0 < e - pos <= SHORT_LINE:
            out.append((pos, e))
        pos = e + 1
    return out


def _finditer_short(pattern: re.Pattern, text: str, lines: list[Span]):
    """``pattern.finditer`` over the short lines only (patterns that never span lines); the
    closing pattern may swallow the newline after its line, so it gets one extra char."""
    for s, e in lines:
        yield from pattern.finditer(text, s, min(len(text), e + 1))


def _line_bounds(text: str, pos: int) -> Span:
    s = text.rfind("\n", 0, pos) + 1
    e = text.find("\n", pos)
    return s, (len(text) if e < 0 else e)


def _whole_line_name(text: str, s: int, e: int, given: frozenset[str]) -> Span | None:
    """A line that is a name, optionally followed by ", role" or " | company"."""
    line = text[s:e]
    if not line.strip() or len(line) > 90:
        return None
    span = name_at(text, s, need_given=True, given=given)
    if span is None:
        return None
    rest = text[span[1]:e].strip()
    if rest and not re.match(r"^(?:[,|–—(/-]|\(|<|\[)", rest):
        return None
    if rest.endswith(("?", "!")) or sum(w[:1].isalpha() and w[:1].islower() and "@" not in w
                                         for w in rest.split()) >= 3:
        return None  # "Hat Freenet Pläne, die Vermarktung ... zu nehmen?" is a sentence, not a name line
    return span


def contact_windows(text: str, anchors: Iterable[Span]) -> list[Span]:
    """Line ranges around contact lines: from up to 4 short lines above the first contact line of
    a run (a name, a role, a company) to up to 3 below the last, across at most one blank line
    each way (footers and imprints set their lines apart)."""
    spans = sorted(anchors)
    lines = short_lines(text)
    for pattern in (_CONTACT_LINE, _WINDOW_LABEL, _CLOSING):
        spans += [m.span() for m in _finditer_short(pattern, text, lines)]
    if not spans:
        return []
    spans.sort()
    windows: list[list[int]] = []
    for s, _ in spans:
        ls, le = _line_bounds(text, s)
        if le - ls > 200:  # a prose paragraph that mentions "mail" is no contact block
            continue
        start, gap = ls, False
        for _ in range(5):  # extend upwards over short lines (a name, a role, a company), one blank allowed
            if start == 0:
                break
            ps, pe = _line_bounds(text, start - 1)
            blank = not text[ps:pe].strip()
            if pe - ps > 90 or blank and (gap or ps == 0):
                break
            gap |= blank
            start = ps
        end, gap = le, False
        for _ in range(4):  # and downwards (the rest of an address), one blank allowed
            if end + 1 >= len(text):
                break
            ns, ne = _line_bounds(text, end + 1)
            blank = not text[ns:ne].strip()
            if ne - ns > 90 or blank and gap:
                break
            gap |= blank
            end = ne
        if windows and start <= windows[-1][1] + 1:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    return [(s, e) for s, e in windows]


class _Everyone:
    """A gazetteer that knows every word (context rules alone decide)."""

    def __contains__(self, item) -> bool:
        return True


EVERYONE = _Everyone()


def names_in_contact(text: str, anchors: Iterable[Span] = (), given=None, windows: list[Span] | None = None,
                     policy: str = "strong_slots") -> list[Span]:
    """Person names in contact contexts. ``anchors``: spans of emails/phones already found (a
    name right before one, or a line in a block with one, is a contact name). ``policy``: where
    the first token must be a gazetteer given name: ``always``; ``strong_slots`` (not after
    "Name:", before "<email>" or " says:", or on the line after a closing: those slots hold a
    name whatever its origin); ``never`` (context rules alone)."""
    given = given_names() if given is None else given
    strong = EVERYONE if policy in ("strong_slots", "never") else given
    if policy == "never":
        given = EVERYONE
    out: list[Span] = []
    for label, end in label_slots(text):
        slot_given = strong if re.match(r"(?i)nam|nom", label) else given
        span = name_at(text, end, need_given=True, given=slot_given)
        while span:  # "Ansprechpartner: Anna Schmidt und Lukas Weber"
            out.append(span)
            more = _AND.match(text, span[1])
            span = name_at(text, more.end(), need_given=True, given=given) if more else None
    lines = short_lines(text)
    for m in _finditer_short(_CLOSING, text, lines):
        ls, le = _line_bounds(text, m.end())
        if m.end() > ls and text[ls:m.end()].strip():  # "Best, Anna" on one line
            span = name_at(text, m.end(), need_given=True, single_ok=True, given=given)
        else:
            span = _whole_line_name(text, ls, le, strong) or name_at(text, ls, need_given=True, single_ok=True,
                                                                    given=given)
            if span and text[span[1]:le].strip() and not re.match(r"^\s*[,|(<–—-]", text[span[1]:le]):
                span = None
        if span:
            out.append(span)
    for m in _finditer_short(_SAYS, text, lines):  # "Jane Doe says:", "2. Michael Blahm sagt:"
        ls, _ = _line_bounds(text, m.start())
        span = name_at(text, _LIST_MARK.match(text, ls).end(), need_given=False, single_ok=True, given=given)
        if span and not text[span[1]:m.start()].strip():
            out.append(span)
    # a name and a date without "says:" is a comment header only near a reply link: on real pages
    # the same shape is mostly a post's byline ("Markus Beckedahl - 27.05.2019 um 13:18 Uhr")
    for (ls, le), (ns, ne) in zip(lines, lines[1:]):  # "Mark Thompson\nMarch 4, 2022 at 3:12 pm"
        if ns == le + 1 and _DATE_LINE.match(text, ns, ne) and _near_reply(text, ls, ne):
            span = _whole_line_name(text, _LIST_MARK.match(text, ls).end(), le, given)
            if span and not text[span[1]:le].strip():
                out.append(span)
    for m in _finditer_short(_COMMENT_DATE, text, lines):  # "Jane Doe | 3. März 2021", "Jane Doe on March 3, ..."
        ls, _ = _line_bounds(text, m.start())
        if not _near_reply(text, ls, m.end()):
            continue
        span = name_at(text, _LIST_MARK.match(text, ls).end(), need_given=True, given=strong)
        if span and not text[span[1]:m.start()].strip():
            out.append(span)
    anchors = list(anchors)
    for s, _ in anchors:  # "Jane Doe <jane@x.org>", "Jane Doe, Tel. +49 ..."
        ls, _ = _line_bounds(text, s)
        prefix = text[ls:s]
        mm = re.search(r"(?:^|[\s:(])([^\s:(][^:(]{0,60}?)[ \t]*(?:[,|;–—(<\[-][ \t]*)*"
                       r"(?:(?:tel|phone|fon|mobil\w*|e-?mail|mail)\.?[ \t]*:?[ \t]*)?$", prefix, re.I)
        if mm:
            for k in range(mm.start(1), mm.end(1)):
                if k == mm.start(1) or prefix[k - 1] == " ":
                    # a short line ("Jane Doe, Tel. ...") or "Name <email>" holds a name whatever
                    # its origin; in prose ("... am Ende der Woche (030 ...)") the gazetteer decides
                    le = text.find("\n", s)
                    short = (len(text) if le < 0 else le) - ls <= 90 or text[:s].rstrip().endswith("<")
                    span = name_at(text, ls + k, need_given=True, given=strong if short else given)
                    if span and not re.sub(r"[\s,|;–—(<\[:-]|tel|phone|fon|mobil\w*|e-?mail|mail|\.", "",
                                           text[span[1]:s], flags=re.I):
                        out.append(span)
                        break
    for ws, we in (contact_windows(text, anchors) if windows is None else windows):
        pos = ws
        while pos <= we:
            le = text.find("\n", pos, we)
            le = we if le < 0 else le
            span = _whole_line_name(text, pos, le, given)
            if span:
                out.append(span)
            pos = le + 1
    return _merge(out)


def addresses_in(text: str, windows: Iterable[Span]) -> list[Span]:
    """Street addresses inside contact windows."""
    out = []
    for ws, we in windows:
        out += [(ws + m.start(), ws + m.end()) for m in _ADDRESS.finditer(text[ws:we])]
    return out


def phones_in(text: str, windows: Iterable[Span]) -> list[Span]:
    """National-format phone numbers (0 trunk prefix, 6-12 digits) right after a phone label
    inside contact windows: 'Tel.: 030 1234567', 'Fax (089) 12 34 56'."""
    out = []
    for ws, we in windows:
        for m in _PHONE_LABEL.finditer(text, ws, we):
            p = _NATIONAL_PHONE.match(text, m.end(), we)
            if p and 6 <= sum(c.isdigit() for c in p.group()) <= 12 and not _DATE.fullmatch(p.group()):
                out.append(p.span())
    return out


def names_anywhere(text: str, given: frozenset[str] | None = None) -> list[Span]:
    """``scope="all"``: bylines, honorific + name, and runs of two or more tokens whose first is a
    gazetteer given name, anywhere in the text."""
    given = given_names() if given is None else given
    out = []
    for m in _BYLINE.finditer(text):
        span = name_at(text, m.end(), need_given=False, given=given)
        if span:
            out.append(span)
    for m in _RUN.finditer(text):
        run = m.group()
        if " " not in run and "\t" not in run or m.start() and text[m.start() - 1].isalnum():
            continue  # one token is never a name here (no honorific, no second token)
        for t in re.finditer(r"\S+", run):  # "Mayor Anna Schmidt": the name starts later
            w = t.group()
            if w not in given and not (len(w) == 2 and w[1] == ".") and not _HONORIFIC_WORD.fullmatch(w):
                continue  # name_at would reject a start that is no given name, initial or honorific
            span = name_at(text, m.start() + t.start(), need_given=True, given=given)
            if span:
                out.append(span)
                break
    return _merge(out)


def _merge(spans: list[Span]) -> list[Span]:
    out: list[list[int]] = []
    for s, e in sorted(set(spans)):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


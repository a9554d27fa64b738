"""A labelled PII set built from real text: paragraphs of the real pages in
``shared/data/real_pages`` (trafilatura's regression pages, Apache-2.0) with planted PII in the
places it occurs on the web (contact blocks, signatures, comment authors, "Contact: ..." lines,
running prose) and look-alikes (place names that are also first names, brands, capitalised
common nouns, product codes, dates, versions, prices, code, times, MACs).

Every planted item and look-alike is recorded with its character span, so a detector's output
can be scored span by span: ``score(docs, find)``. ``build(...)`` writes the set;
``tests/data/pii_labelled.jsonl.gz`` is one built with ``seed=0`` (``python -m bench.pii --write``).

Item kinds: ``(type, context, text, start, end)``; ``context`` is ``contact`` (contact block,
signature, comment author, "Contact: ...") or ``prose`` (a sentence of running text). Look-alikes:
``(kind, context, text, start, end)``. ``prose`` PERSON items are public figures in news prose:
kept by the default (``names="contact"``), redacted by ``names="all"``.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter, defaultdict
from typing import Callable, Iterable

from deeprecipe.stages.generators import labelled_pii as lc

FIRST = ("Anna", "James", "Sarah", "Michael", "Emily", "David", "Laura", "Daniel", "Jessica", "Thomas", "Lukas",
         "Julia", "Felix", "Katharina", "Jürgen", "Sabine", "Marie", "Camille", "Hugo", "Léa", "François", "Élodie",
         "Lucía", "Javier", "María", "Pablo", "João", "Ana", "Rafael", "Beatriz", "Priya", "Rahul", "Ananya", "Arjun",
         "Wei", "Li", "Xiaoming", "Mei", "Hiroshi", "Yuki", "Kenji", "Sakura", "Oluwaseun", "Chinedu", "Amara",
         "Thandiwe", "Siobhan", "Niamh", "Ciarán", "Aoife", "Mohammed", "Fatima", "Omar", "Leila", "Olga", "Dmitri",
         "Katarzyna", "Piotr", "Ingrid", "Lars", "Astrid", "Matteo", "Giulia", "Kai", "Noah", "Zoe")
LAST = ("Miller", "Schmidt", "Weber", "Fischer", "Müller", "Dubois", "Moreau", "Lefèvre", "García", "Fernández",
        "López", "Silva", "Santos", "Oliveira", "Sharma", "Patel", "Iyer", "Wang", "Zhang", "Chen", "Tanaka",
        "Suzuki", "Sato", "Okafor", "Adeyemi", "Nkosi", "O'Connor", "Murphy", "McCarthy", "Haddad", "Khan",
        "Ivanova", "Petrov", "Kowalski", "Nowak", "Johansson", "Larsen", "Rossi", "Bianchi", "van der Berg",
        "von Hagen", "de la Cruz", "Smith", "Brown", "Wright", "Hughes", "Becker", "Hoffmann", "Nguyen", "Kim")
HONORIFIC = ("Dr.", "Prof.", "Mr.", "Ms.", "Mrs.", "Herr", "Frau", "Mme", "M.")
ROLES = ("Head of Communications", "Press Officer", "Pressesprecherin", "Chargée de communication",
         "Sales Manager", "Project Lead", "Redakteur", "Customer Success", "Office Manager")
COMPANIES = ("Acme GmbH", "Nordlicht Media AG", "Blue River Ltd", "Société Générale des Eaux", "Grupo Sol SA",
             "Brightside Labs Inc.", "Stadtwerke Musterstadt")
CLOSINGS = ("Best regards,", "Kind regards,", "Regards,", "Cheers,", "Thanks,", "Sincerely,",
            "Mit freundlichen Grüßen", "Viele Grüße", "Cordialement,", "Bien à vous,", "Saludos,", "--")
COMMENT_LINES = ("I tried this last weekend and it worked well.", "Thanks for the detailed write-up!",
                 "Does anyone know if this also applies to older models?", "Great article, very helpful.",
                 "Ich habe das genauso erlebt, danke für den Beitrag.", "Merci pour cet article très clair.")
PROSE_FRAMES = ("{hon}{name} said on Tuesday that the plan would be reviewed next year.",
                "According to {hon}{name}, the figures for the last quarter were better than expected.",
                "The proposal was presented by {hon}{name} at the annual meeting.",
                "{hon}{name} told reporters the talks would continue.")
PROSE_ROLES = ("", "", "Minister ", "Chancellor ", "Mayor ", "President ", "Coach ", "Professor ")

# look-alikes of names: place names that are first names, brands, capitalised common nouns, codes
PLACES = ("Florence", "Sydney", "Victoria", "Jordan", "Georgia", "Austin", "Charlotte", "Chelsea", "Madison",
          "Paris", "Adelaide", "Savannah", "Eugene", "Lincoln", "Orlando", "Santiago", "Salvador", "Regina",
          "Alexandria", "Augusta", "Florenz", "Valencia", "Lourdes", "Santa Clara", "San José", "Marseille")
BRANDS = ("Mercedes-Benz", "Tim Hortons", "Ben & Jerry's", "Wendy's", "Dell XPS 13", "Jack Daniel's",
          "Dr. Oetker", "Alfa Romeo", "Aston Martin", "Lamborghini Huracán", "Rolls-Royce", "Dolce & Gabbana",
          "Ray-Ban", "Philips Hue", "Tesla Model 3", "Johnson & Johnson", "Victoria's Secret", "Mont Blanc")
COMMON = ("Customer Service", "Head Office", "Summer Sale", "Annual Report", "Board Meeting", "Human Resources",
          "Grand Opening", "Open Day", "Press Office", "Quality Assurance", "Central Station", "City Hall",
          "North Sea", "Black Friday", "Happy New Year", "Privacy Policy", "Terms and Conditions")
CODES = ("SKU AB-1234-X", "RTX 4090", "iPhone 15 Pro", "ISO 9001:2015", "EN 71-3", "A4 80 g/m²", "Model XJ-220",
         "Art.-Nr. 4711-0815", "PN 0045-2231", "REF 00 12 34", "M8x40", "USB-C 3.2 Gen 2")
CONTACT_LOOKALIKES = ("Contact: Customer Service", "Kontakt: Presse-Team", "Best regards,\nThe {place} Team",
                      "Contact: Head Office", "Kontakt: Stadtverwaltung {place}", "Name: Summer Sale 2024",
                      "Cordialement,\nL'équipe {place}", "Posted by Admin", "Contact: {place} City Council",
                      "Viele Grüße\nIhr Team von {place} Reisen", "Contact: Support Desk", "From: Newsletter Team")
PROSE_LOOKALIKE_FRAMES = ("We drove from {place} to {place2} in one day.", "The new {brand} costs {price}.",
                          "{common} opens on {date}.", "Order {code} before {date}.", "{place} won the match 3-1.",
                          "Version {version} of the app fixes the {brand} integration.",
                          "Visit {place} and {place2} for the festival, tickets from {price}.",
                          "{common} and {brand} announced a partnership.")
NEW_LOOKALIKES = ("std::vector<int> v(3);", "ratio 1:2:3", "at 12:30:45", "MAC 00:1A:2B:3C:4D:5E", "a::b::c",
                  "Note: 10:30 - 11:45", "ISBN 0-306-40615-2", "Tel Aviv", "v2.3.1", "12.04.2023", "2001-2024",
                  "see you [at] the office", "order no. 0012 3456", "UTC+01:00", "+/- 0.5 mm", "1 234 567,89 €",
                  "Matthew 5:3-12", "PLZ 10115", "Art. 12 Abs. 3", "§ 312 BGB")


def intl_phone(rng: random.Random) -> str:
    r = rng.randint
    return rng.choice([
        f"+49 30 {r(1000000, 99999999)}", f"+49 (0)89 {r(100, 999)} {r(1000, 9999)}", f"+49 171 {r(1000000, 9999999)}",
        f"0049 40 {r(100000, 9999999)}", f"+33 1 {r(10, 99)} {r(10, 99)} {r(10, 99)} {r(10, 99)}",
        f"+33 (0)6 {r(10, 99)} {r(10, 99)} {r(10, 99)} {r(10, 99)}", f"+33 6.{r(10, 99)}.{r(10, 99)}.{r(10, 99)}.{r(10, 99)}",
        f"+44 20 {r(7000, 8999)} {r(1000, 9999)}", f"+44 (0)161 {r(100, 999)} {r(1000, 9999)}", f"+44 7700 {r(100000, 999999)}",
        f"+91 {r(70000, 99999)} {r(10000, 99999)}", f"+91 22 {r(1000, 9999)} {r(1000, 9999)}",
        f"+86 138 {r(1000, 9999)} {r(1000, 9999)}", f"+86 10 {r(1000, 9999)} {r(1000, 9999)}",
        f"+81 3-{r(1000, 9999)}-{r(1000, 9999)}", f"+81 90-{r(1000, 9999)}-{r(1000, 9999)}",
        f"+55 11 9{r(1000, 9999)}-{r(1000, 9999)}", f"+55 (21) {r(2000, 3999)}-{r(1000, 9999)}",
    ])


def national_phone(rng: random.Random) -> str:
    """National formats: FR/JP/BR anywhere, the rest only after a phone label in a contact block."""
    r = rng.randint
    return rng.choice([
        f"030 {r(1000000, 99999999)}", f"(089) {r(100, 999)} {r(1000, 9999)}", f"0171 {r(1000000, 9999999)}",
        f"01 {r(10, 99)} {r(10, 99)} {r(10, 99)} {r(10, 99)}", f"06.{r(10, 99)}.{r(10, 99)}.{r(10, 99)}.{r(10, 99)}",
        f"020 {r(7000, 8999)} {r(1000, 9999)}", f"07700 {r(100000, 999999)}", f"03-{r(1000, 9999)}-{r(1000, 9999)}",
        f"090-{r(1000, 9999)}-{r(1000, 9999)}", f"(11) 9{r(1000, 9999)}-{r(1000, 9999)}", f"010-{r(10000000, 99999999)}",
    ])


def obfuscated_email(rng: random.Random) -> str:
    user = rng.choice(["anna.smith", "j.weber", "contact", "info", "m_dubois", "priya.r", "kenji"])
    dom, tld = rng.choice([("example", "com"), ("firma", "de"), ("mail.example", "org"), ("uni-test", "fr")])
    dom = dom.split(".")
    at, dot = rng.choice([(" [at] ", " [dot] "), (" (at) ", " (dot) "), (" AT ", " DOT "), ("[at]", "[dot]"),
                          (" (ät) ", " (punkt) "), ("@", "[.]"), (" {at} ", " {dot} ")])
    return user + at + dot.join(dom) + dot + tld


def ipv6(rng: random.Random) -> str:
    g = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(8)]
    return rng.choice([f"2001:db8::{g[0]}", f"fe80::{g[1]}:{g[2]}%eth0", "::1", f"::ffff:{rng.randint(1, 254)}.0.2.{rng.randint(1, 254)}",
                       f"2001:db8:{g[3]}::", f"{g[4]}:{g[5]}::{g[6]}:{g[7]}", f"2a00:1450:4001::{g[0]}"])


def street_address(rng: random.Random) -> str:
    r = rng.randint
    return rng.choice([
        f"{r(1, 999)} Main Street", f"{r(1, 99)}B Baker Street, London NW1 6XE", f"{r(100, 9999)} Oak Avenue, Springfield, IL 62704",
        f"Hauptstraße {r(1, 200)}, 10115 Berlin", f"Lindenallee {r(1, 99)}a, 50667 Köln", f"Am Markt Platz {r(1, 30)}",
        f"{r(1, 99)} rue de la Paix, 75002 Paris", f"{r(1, 99)} bis, avenue Victor Hugo, 69002 Lyon",
        f"Calle Mayor {r(1, 99)}, 28013 Madrid", f"Rua Augusta {r(1, 999)}", f"Via Roma {r(1, 99)}, 00184 Roma",
        f"Kerkstraat {r(1, 200)}, 1017 Amsterdam",
    ])


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


class _Doc:
    """Text assembled piece by piece, recording the spans of planted items and look-alikes."""

    def __init__(self):
        self.parts: list[str] = []
        self.len = 0
        self.items: list[list] = []
        self.looks: list[list] = []

    def add(self, s: str) -> int:
        self.parts.append(s)
        self.len += len(s)
        return self.len - len(s)

    def template(self, tpl: str, fields: dict, context: str) -> None:
        """``tpl`` with ``{field}``; fields map to ``(kind, text, is_pii)``."""
        pos = 0
        for m in re.finditer(r"\{(\w+)\}", tpl):
            self.add(tpl[pos:m.start()])
            kind, text, is_pii = fields[m.group(1)]
            start = self.add(text)
            if kind:
                (self.items if is_pii else self.looks).append([kind, context, text, start, start + len(text)])
            pos = m.end()
        self.add(tpl[pos:])

    def text(self) -> str:
        return "".join(self.parts)


def contact_block(rng: random.Random, d: _Doc) -> None:
    name = person(rng)
    hon = rng.choice(HONORIFIC) + " " if rng.random() < 0.3 else ""
    kind = rng.randrange(7)
    phone = ("PHONE", intl_phone(rng) if rng.random() < 0.6 else national_phone(rng), True)
    email_text = (name.split()[0].lower() + "." + name.split()[-1].lower()).encode("ascii", "ignore").decode()
    email = ("EMAIL", obfuscated_email(rng) if rng.random() < 0.5 else
             re.sub(r"[^a-z.]", "", email_text) + "@" + rng.choice(["example.com", "firma.de", "exemple.fr"]), True)
    addr = ("ADDRESS", street_address(rng), True)
    f = {"name": ("PERSON", name, True), "hon": ("", hon, False), "phone": phone, "email": email, "addr": addr,
         "role": ("", rng.choice(ROLES), False), "co": ("", rng.choice(COMPANIES), False),
         "closing": ("", rng.choice(CLOSINGS), False), "comment": ("", rng.choice(COMMENT_LINES), False),
         "date": ("", rng.choice(["March 3, 2021 at 10:15 am", "12. Mai 2023 um 14:02", "3 juin 2022 à 9 h 41",
                                 "2024-01-15 08:30"]), False)}
    label = rng.choice(["Press contact:", "Kontakt:", "Contact", "Ansprechpartnerin:", "Contact presse :",
                        "Media contact:", "Pressekontakt"])
    tel = rng.choice(["Tel.:", "Phone:", "Tel", "Telefon:", "Tél. :", "T:", "Mobil:", "Fax:"])
    mail = rng.choice(["E-Mail:", "Email:", "Mail:", "Courriel :", "E-mail"])
    tpl = [
        f"{label}\n{{hon}}{{name}}\n{{role}}\n{{co}}\n{{addr}}\n{tel} {{phone}}\n{mail} {{email}}",
        "{closing}\n{hon}{name}\n{role} | {co}\n" + tel + " {phone}",
        "{name} says:\n{date}\n{comment}",
        "For more information, please contact {hon}{name} at {email} or " + tel.rstrip(":") + " {phone}.",
        f"{label} {{hon}}{{name}}, {{phone}}",
        "Name: {name}\n" + mail + " {email}\n" + tel + " {phone}",
        "{name} <{email}>\n{co}\n{addr}",
    ][kind]
    d.template(tpl, f, "contact")


def build(warc_path: str, n_docs: int = 300, seed: int = 0) -> list[dict]:
    """The labelled set: ``n_docs`` documents of 2-3 real paragraphs with planted items."""
    from deeprecipe.stages import crawl_ingest as ci
    with open(warc_path, "rb") as f:
        pages = list(ci.iter_documents(f, "pages.warc.gz", ci.IngestStats()))
    paragraphs = []
    for p in sorted(pages, key=lambda p: p["url"] or ""):
        for line in p["text"].split("\n"):
            line = re.sub(r"\s+", " ", line).strip()
            if 80 <= len(line) <= 700 and len(line.split()) >= 12:
                paragraphs.append(line)
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        d = _Doc()

        def para():
            d.add(rng.choice(paragraphs) + "\n\n")
        para()
        for _ in range(rng.randint(1, 2)):  # contact items
            contact_block(rng, d)
            d.add("\n\n")
        para()
        # running prose: a public name, look-alikes, and PII of every type in a sentence
        hon = rng.choice(PROSE_ROLES)
        d.template(rng.choice(PROSE_FRAMES) + " ", {"hon": ("", hon, False),
                                                    "name": ("PERSON", person(rng), True)}, "prose")
        fields = {"place": ("place", rng.choice(PLACES), False), "place2": ("place", rng.choice(PLACES), False),
                  "brand": ("brand", rng.choice(BRANDS), False), "common": ("common_noun", rng.choice(COMMON), False),
                  "code": ("product_code", rng.choice(CODES), False), "date": ("date", lc.lookalike(rng, ["date"])[1], False),
                  "price": ("price", lc.lookalike(rng, ["price"])[1], False),
                  "version": ("version", lc.lookalike(rng, ["version"])[1], False)}
        for frame in rng.sample(PROSE_LOOKALIKE_FRAMES, 2):
            d.template(frame + " ", fields, "prose")
        look_tpl = rng.choice(CONTACT_LOOKALIKES)
        d.add("\n\n")
        d.template("{x}\n\n", {"x": ("contact_lookalike", look_tpl.format(place=rng.choice(PLACES)), False)}, "contact")
        kind, text = lc.lookalike(rng)
        d.template("The figure ({x}) was checked. ", {"x": (kind, text, False)}, "prose")
        d.template("See {x} for details. ", {"x": ("format_lookalike", rng.choice(NEW_LOOKALIKES), False)}, "prose")
        t = rng.choice(sorted(lc.PII_GENERATORS))
        gen = {"PHONE": lambda r: intl_phone(r) if r.random() < 0.5 else lc.fake_phone(r),
               "EMAIL": lambda r: obfuscated_email(r) if r.random() < 0.5 else lc.fake_email(r),
               "IP_ADDRESS": lambda r: ipv6(r) if r.random() < 0.5 else lc.fake_ip(r)}.get(t, lc.PII_GENERATORS[t])
        d.template(rng.choice(["You can reach us at {x} today.", "Details: {x}", "The record lists {x} as given."]),
                   {"x": (t, gen(rng), True)}, "prose")
        d.add("\n")
        docs.append({"id": f"pii-{seed}-{i:04d}", "text": d.text(), "items": d.items, "lookalikes": d.looks})
    return docs


def write(docs: list[dict], path: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


def read(path: str) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------

Found = Callable[[str], Iterable[tuple[int, int, str]]]  # text -> [(start, end, type)]


def score(docs: list[dict], find: Found, types: Iterable[str] | None = None) -> dict:
    """Per ``type/context``: recall (planted items fully covered by a detection of that type),
    precision (detections of that type overlapping a planted item of that type, over detections
    outside the real paragraphs plus those inside them), look-alikes altered (any detection
    overlapping), and the detections that fell in the real paragraphs (unlabelled: real PII or
    false positives; listed for inspection)."""
    hit, total = Counter(), Counter()
    tp_det, all_det, in_real = Counter(), Counter(), Counter()
    look_alt, look_total = Counter(), Counter()
    samples = defaultdict(list)
    for doc in docs:
        dets = list(find(doc["text"]))
        labelled_regions = [(s, e) for _, _, _, s, e in doc["items"]] + [(s, e) for *_, s, e in doc["lookalikes"]]
        for kind, ctx, text, s, e in doc["items"]:
            total[(kind, ctx)] += 1
            hit[(kind, ctx)] += any(t == kind and ds <= s and de >= e for ds, de, t in dets)
        for kind, ctx, text, s, e in doc["lookalikes"]:
            look_total[kind] += 1
            bad = [doc["text"][ds:de] for ds, de, t in dets if ds < e and de > s]
            look_alt[kind] += bool(bad)
            if bad:
                samples["lookalike:" + kind].append((text, bad))
        for ds, de, t in dets:
            all_det[t] += 1
            if any(k == t and ds < e and de > s for k, _, _, s, e in doc["items"]):
                tp_det[t] += 1
            elif not any(ds < e and de > s for s, e in labelled_regions):
                in_real[t] += 1
                samples["unlabelled:" + t].append(doc["text"][max(0, ds - 30):de + 10])
    types = sorted({k for k, _ in total} | set(all_det)) if types is None else list(types)
    out = {"recall": {f"{k}/{c}": (hit[(k, c)], total[(k, c)]) for k, c in sorted(total) if k in types},
           "precision": {t: (tp_det[t], all_det[t] - in_real[t]) for t in types},
           "detections_in_real_text": {t: in_real[t] for t in types},
           "lookalikes_altered": {k: (look_alt[k], look_total[k]) for k in sorted(look_total)},
           "samples": {k: v[:8] for k, v in samples.items()}}
    return out

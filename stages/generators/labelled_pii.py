"""Planted PII and PII look-alikes: fake e-mail addresses, phone numbers, IPs, Luhn-valid card
numbers, SSN-like ids and IBANs with valid check digits (``PII_GENERATORS``), strings that look
like PII but are not (versions, dates, prices, ISBNs, ...: ``lookalike``), and sentences and
pages that carry them."""
from __future__ import annotations

import random
import string
from typing import Callable, Sequence

from deeprecipe.stages.generators.labelled_prose import SentenceFn, sentence_source

_FIRST = ["anna", "john", "maria", "li", "omar", "sofia", "peter", "yuki", "carlos", "emma"]
_LAST = ["smith", "muller", "garcia", "chen", "okafor", "rossi", "dubois", "kim", "novak", "silva"]


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == number[-1]


def iban_check_digits(country: str, bban: str) -> str:
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(num) % 97:02d}"


def fake_email(rng: random.Random) -> str:
    sep = rng.choice([".", "_", ""])
    host = rng.choice(["example.com", "mail.example.org", "uni-test.edu", "firma.de", "correo.es"])
    return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}{rng.randint(1, 99) if rng.random() < 0.3 else ''}@{host}"


def fake_phone(rng: random.Random) -> str:
    area, exch, line = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    if area % 100 == 11:
        area += 1
    return rng.choice([
        f"({area}) {exch}-{line:04d}", f"{area}-{exch}-{line:04d}", f"{area}.{exch}.{line:04d}",
        f"+1 {area} {exch} {line:04d}", f"+1-{area}-{exch}-{line:04d}",
        f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}",
        f"+49 30 {rng.randint(1000000, 99999999)}", f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        f"+34 912 {rng.randint(100, 999)} {rng.randint(100, 999)}",
    ])


def fake_ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return "2001:db8::" + ":".join(groups[:3])


def fake_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    num = body + luhn_check_digit(body)
    if length == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def fake_ssn(rng: random.Random) -> str:
    area = rng.randint(1, 899)
    area += area == 666
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def fake_iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("ES", 20), ("NL", 14)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(str(rng.randint(0, 9)) for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(str(rng.randint(0, 9)) for _ in range(10))
    else:
        bban = "".join(str(rng.randint(0, 9)) for _ in range(length))
    iban = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


PII_GENERATORS = {"EMAIL": fake_email, "PHONE": fake_phone, "IP_ADDRESS": fake_ip, "CARD": fake_card,
                  "SSN": fake_ssn, "IBAN": fake_iban}


LOOKALIKE_KINDS = ("version", "date", "price", "isbn", "math", "code", "number", "card_invalid",
                   "time", "iban_invalid", "year_range", "decimal")


def lookalike(rng: random.Random, kinds: Sequence[str] = LOOKALIKE_KINDS) -> tuple[str, str]:
    """A string that resembles PII but is not: ``(kind, text)``, kind one of ``kinds``."""
    kind = rng.choice(list(kinds))
    r = rng.randint
    if kind == "version":
        text = rng.choice([f"v{r(0, 9)}.{r(0, 30)}.{r(0, 99)}", f"version {r(1, 9)}.{r(0, 20)}.{r(0, 9)}",
                           f"{r(1, 20)}.{r(0, 9)}.{r(1000, 99999)}.{r(256, 999)}", f"Python {r(2, 3)}.{r(0, 13)}.{r(0, 9)}"])
    elif kind == "date":
        text = rng.choice([f"{r(1990, 2030)}-{r(1, 12):02d}-{r(1, 28):02d}", f"{r(1, 28):02d}/{r(1, 12):02d}/{r(1990, 2030)}",
                           f"{r(1, 28):02d}.{r(1, 12):02d}.{r(1990, 2030)}", f"March {r(1, 28)}, {r(1990, 2030)}"])
    elif kind == "price":
        text = rng.choice([f"${r(1, 9)},{r(100, 999)}.{r(0, 99):02d}", f"€{r(1, 999)}.{r(0, 99):02d}",
                           f"USD {r(10, 99)},{r(100, 999)}", f"£{r(1, 99)}.99"])
    elif kind == "isbn":
        text = rng.choice([f"ISBN 978-{r(0, 9)}-{r(10, 99)}-{r(100000, 999999)}-{r(0, 9)}",
                           f"978-{r(0, 9)}-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)}", f"0-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)}"])
    elif kind == "math":
        text = rng.choice([f"{r(2, 99)} + {r(2, 99)} = {r(100, 300)}", f"x^2 + {r(2, 9)}x - {r(2, 9)} = 0",
                           f"{r(100, 999)} * {r(100, 999)} = {r(10000, 999999)}", f"3.{r(10000, 99999)}", f"{r(1, 9)}/{r(2, 9)}"])
    elif kind == "code":
        text = rng.choice([f"arr[{r(0, 255)}][{r(0, 255)}] = 0x{r(0, 0xFFFFFF):06x};", f"std::vector<int> v({r(1, 99)});",
                           f"for (int i = 0; i < {r(10, 999)}; i++)", f"return {{ 'id': {r(1000, 9999)}, 'x': {r(1, 99)} }}"])
    elif kind == "number":
        text = rng.choice([str(r(10**9, 10**10 - 1)), f"{r(1, 999)},{r(100, 999)},{r(100, 999)}", f"order #{r(10**7, 10**8)}"])
    elif kind == "card_invalid":
        body = "4" + "".join(str(r(0, 9)) for _ in range(14))
        bad = str((int(luhn_check_digit(body)) + r(1, 9)) % 10)
        text = " ".join((body + bad)[i : i + 4] for i in range(0, 16, 4))
    elif kind == "time":
        text = rng.choice([f"{r(0, 23):02d}:{r(0, 59):02d}:{r(0, 59):02d}", f"{r(1, 12)}:{r(0, 59):02d} pm"])
    elif kind == "iban_invalid":
        bban = "".join(str(r(0, 9)) for _ in range(18))
        good = iban_check_digits("DE", bban)
        text = "DE" + f"{(int(good) + r(1, 50)) % 97 + 2:02d}" + bban
    elif kind == "year_range":
        text = f"{r(1900, 2000)}-{r(2001, 2030)}"
    else:
        text = f"{r(0, 999)}.{r(0, 999)}.{r(0, 999)}"
    return kind, text


FrameFn = Callable[[random.Random, str], str]
"""Puts a planted string into a sentence: ``frame(rng, item) -> sentence containing item``."""

_EN_FRAMES = ("Contact: {}.", "You can reach us at {} today.", "Ref {} (see above).", "Details: {}", "({})")


def parenthetical_frame(sentence: SentenceFn) -> FrameFn:
    """A frame that writes a natural sentence (from ``sentence``) with the item in parentheses
    before its final punctuation: '... at the town hall (anna.smith@example.com).' Only the
    item itself is new to a language model of the sentence source."""
    def frame(rng: random.Random, item: str) -> str:
        text = sentence(rng)
        end = len(text.rstrip(".!?\u201c\u201d\u00bb\u00ab\"' "))
        return f"{text[:end]} ({item}){text[end:]}"
    return frame


def pii_sentences(rng: random.Random, lang: str = "en", n_pii: int = 4, n_look: int = 4,
                  sentence: SentenceFn | None = None, lookalike_kinds: Sequence[str] = LOOKALIKE_KINDS,
                  n_sentences: int | None = None, frame: FrameFn | None = None,
                  ) -> tuple[list[str], list, list]:
    """``n_sentences`` (default 8-14) natural sentences (from ``sentence``) with ``n_pii`` planted
    PII strings (distinct types) and ``n_look`` look-alikes, each in a sentence of its own made
    by ``frame`` (default: short English frames such as 'Contact: {}.').

    Returns ``(sentences, [(type, planted)], [(kind, lookalike)])``."""
    sentence = sentence_source(lang, sentence)
    sents = [sentence(rng) for _ in range(n_sentences if n_sentences is not None else rng.randint(8, 14))]
    pii = [(t, PII_GENERATORS[t](rng)) for t in rng.sample(sorted(PII_GENERATORS), n_pii)]
    look = [lookalike(rng, lookalike_kinds) for _ in range(n_look)]
    if frame is None:
        frame = lambda r, item: r.choice(_EN_FRAMES).format(item)  # noqa: E731
    for _, s in pii + look:
        sents.insert(rng.randrange(len(sents) + 1), frame(rng, s))
    return sents, pii, look


def pii_page(rng: random.Random, lang: str = "en", n_pii: int = 4, n_look: int = 4) -> tuple[str, list, list]:
    """Natural page with planted PII and look-alikes between sentences.

    Returns ``(text, [(type, planted)], [(kind, lookalike)])``."""
    sents, pii, look = pii_sentences(rng, lang, n_pii, n_look)
    return " ".join(sents), pii, look


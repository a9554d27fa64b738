"""PII redaction: regex candidates + validation, context rules + a given-name gazetteer for
person names; each span replaced by a typed placeholder.

Detected types and their validation (so numbers and names in ordinary text survive):

- ``<EMAIL>``: RFC-ish local@domain.tld, and obfuscated forms with a bracketed or upper-case
  at/dot: ``name [at] domain [dot] com``, ``name (at) domain (dot) org``, ``name AT domain DOT
  com``, ``name@domain[.]com``, German ``(ät)``/``[punkt]`` (plain lower-case "at"/"dot" are prose).
- ``<PHONE>``: NANP numbers with separators (area and exchange codes 2-9xx, optional +1/1);
  ``+CC``/``00CC`` numbers in separated groups of up to 5 digits (trunk ``(0)``, ``/``), length
  checked per country for DE, FR, UK, IN, CN, JP, BR, US and E.164's 8-15 digits otherwise;
  French ``01 23 45 67 89``, Japanese ``03-1234-5678``, Brazilian ``(11) 91234-5678`` anywhere;
  national numbers with a trunk 0 after a phone label or separator inside a contact block
  (``Tel.: 030 1234567``, ``Mob: 07912 345678``). Bare digit runs, dates, versions, ISBNs and
  prices never match (separator/grouping rules + boundaries).
- ``<IP_ADDRESS>``: IPv4 / IPv6 (every compressed form, ``%zone``, ``::ffff:a.b.c.d``) validated
  with ``ipaddress``; dotted quads preceded by ``v``/``version`` are versions, not addresses.
- ``<CARD>``: 13-19 digits (spaces/dashes allowed), issuer prefix (Visa, Mastercard, Amex,
  Discover, JCB, Diners) and Luhn checksum.
- ``<SSN>``: ``AAA-GG-SSSS`` with area not 000/666/9xx, group not 00, serial not 0000.
- ``<IBAN>``: country code + check digits + BBAN of that country's length, mod-97 == 1.
- ``<ADDRESS>``: street addresses (EN/DE/FR/ES/PT/IT/NL forms, with postcode and city) inside
  contact blocks only (``stages.pii_contact``).
- ``<PERSON>``: names in contact contexts (``names="contact"``, the default: contact blocks,
  signatures, comment authors, "Contact: ...") or also bylines and running prose
  (``names="all"``), by ``stages.pii_contact``; ``names="off"`` for none; plus the spans of any
  ``ner`` hook (``text -> [(start, end)]``) a user brings.

``redact(text)`` returns the redacted text and counts per type; ``PiiRedactor`` applies it to a
table and keeps running stats.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pyarrow as pa

from deeprecipe.stages import pii_contact

from deeprecipe.pipeline.config import option

PLACEHOLDERS = {t: f"<{t}>" for t in ("EMAIL", "PHONE", "IP_ADDRESS", "CARD", "SSN", "IBAN", "PERSON", "ADDRESS")}
NerHook = Callable[[str], Iterable[tuple[int, int]]]
NAME_SCOPES = ("contact", "all", "off")

# ---------------------------------------------------------------------------------------------
# validators
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiiRedactConfig:
    types: list = option("PII types; empty = all", display_empty="all")
    keep_public_names: bool = option(
        "true (default): names only in contact contexts (contact blocks, signatures, comment "
        "authors, 'Contact: ...') become <PERSON>, names in running prose and bylines stay; "
        "false: also bylines, honorific + name and gazetteer-confirmed names in prose", True)


def luhn_valid(digits: str) -> bool:
    """Luhn checksum over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"^(?:4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2(?:2[2-9]|[3-6]\d|7[01])\d{13}|2720\d{12}"
                          r"|3[47]\d{13}|6(?:011|5\d{2})\d{12,15}|35(?:2[89]|[3-8]\d)\d{12,15}|3(?:0[0-5]|[68]\d)\d{11,16})$")


def valid_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}


def valid_iban(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def valid_ssn(candidate: str) -> bool:
    area, group, serial = candidate.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def valid_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


# digits after the country code (national significant number, trunk 0 dropped) for the countries
# whose local groupings the patterns know; other codes get E.164's 8-15 digits in total
NSN_LENGTHS = {"1": (10,), "33": (9,), "44": (9, 10), "49": tuple(range(6, 12)), "55": (10, 11), "81": (9, 10),
               "86": (9, 10, 11), "91": (10,)}


def valid_phone(candidate: str) -> bool:
    cand = candidate.strip()
    digits = re.sub(r"\D", "", cand)
    if cand.startswith(("+", "00")):
        if cand.startswith("00"):
            digits = digits[2:]
        digits_no_trunk = re.sub(r"\D", "", re.sub(r"\(0\)", "", cand))[2 if cand.startswith("00") else 0:]
        if cand.startswith(("+1", "+ 1", "001")) and len(digits) == 11:
            return digits[1] in "23456789" and digits[4] in "23456789"
        for cc in (digits[:1], digits[:2], digits[:3]):
            if cc in NSN_LENGTHS:
                return len(digits_no_trunk) - len(cc) in NSN_LENGTHS[cc]
        return 8 <= len(digits) <= 15 and digits[0] != "0"
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789"


def valid_national_phone(candidate: str) -> bool:
    """French 0X XX XX XX XX, Japanese 0X(XXX)-XXXX-XXXX, Brazilian (DD) 9XXXX-XXXX: 10-11 digits."""
    return 10 <= sum(c.isdigit() for c in candidate) <= 11


_OBF = re.compile(r"[\[({<]\s*(?:at|ät|arobase|@|dot|punkt|point|\.)\s*[\])}>]|\s(?:AT|DOT)\s")


def valid_obfuscated_email(candidate: str) -> bool:
    """At least one bracketed or upper-case ``at``/``dot``: plain 'at ... dot' is prose."""
    return bool(_OBF.search(candidate))


def valid_ip_zone(candidate: str) -> bool:
    return valid_ip(candidate.split("%", 1)[0])


# ---------------------------------------------------------------------------------------------
# candidate patterns (ordered: earlier types win overlapping spans)
# ---------------------------------------------------------------------------------------------

_NUM_LEFT = r"(?<![\w.,/:+\-$€£])"  # not inside a larger number / word / price / path
_NUM_RIGHT = r"(?![\w]|[.,/:\-]\d)"
_NOT_NUM = r"[\w.,/:+\-$€£]"


def _lead(first: str, not_before: str = _NOT_NUM) -> str:
    """``first`` (a fixed-width literal or class) not preceded by a char of ``not_before``; the
    consuming token comes first so ``re`` can skip ahead by it (a leading look-behind makes
    every position a match attempt: 2-60x slower on prose)."""
    return rf"{first}(?<!{not_before}{first})"


_AT = r"(?:[ \t]*[\[({<][ \t]*(?:at|AT|ät|arobase|@)[ \t]*[\])}>][ \t]*|[ \t]+AT[ \t]+|@)"
_DOT = r"(?:[ \t]*[\[({<][ \t]*(?:dot|DOT|punkt|point|\.)[ \t]*[\])}>][ \t]*|[ \t]+DOT[ \t]+|\.)"
_CC_REST = (r"\d{1,3}[ .-]?(?:\(0?\d{0,4}\)[ .-]?)?\d{1,5}(?:(?:[ .-]|[ ]?/[ ]?)?\d{1,5}){1,5}"  # 030 / 1234
            + _NUM_RIGHT)

PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool]]] = [
    ("EMAIL", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])"), lambda s: True),
    ("EMAIL", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+" + _AT + r"(?:[A-Za-z0-9-]+" + _DOT + r")+[A-Za-z]{2,}(?![\w-])"),
     valid_obfuscated_email),
    ("IBAN", re.compile(_lead("[A-Z]", r"\w") + r"[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])"), valid_iban),
    ("CARD", re.compile(_lead(r"\d") + r"(?:[ -]?\d){12,18}" + _NUM_RIGHT), valid_card),
    ("SSN", re.compile(_lead(r"\d") + r"\d{2}-\d{2}-\d{4}" + _NUM_RIGHT), valid_ssn),
    ("PHONE", re.compile(_lead(r"\+", r"[\w+]") + _CC_REST), valid_phone),  # +CC ...
    ("PHONE", re.compile(_lead("00", r"[\w+.,/:$€£-]") + r"(?<!\d 00)[ ]?(?=[1-9])" + _CC_REST), valid_phone),  # 00CC
    ("PHONE", re.compile(  # NANP: 1-800-275-2273, (415) 555-2671, 415.555.2671
        r"(?:" + _lead("1[ .-]") + r"(?:\(\d{3}\) ?|\d{3}[ .-])|" + _lead(r"\(") + r"\d{3}\) ?|"
        + _lead(r"\d") + r"\d{2}[ .-])\d{3}[ .-]\d{4}" + _NUM_RIGHT), valid_phone),
    ("PHONE", re.compile(
        _lead("0") + r"(?:[1-9](?:([ .])\d{2})(?:\1\d{2}){3}"  # FR 01 23 45 67 89
        + r"|\d{1,4}-\d{1,4}-\d{4})" + _NUM_RIGHT  # JP 03-1234-5678, 090-1234-5678
        + r"|" + _lead(r"\(", r"[\w(]") + r"\d{2}\) ?9?\d{4}-\d{4}" + _NUM_RIGHT), valid_national_phone),  # BR
    ("IP_ADDRESS", re.compile(  # IPv6, any compressed form, zone id (before IPv4: ::ffff:192.0.2.1)
        r"(?<![\w:.])(?=[0-9A-Fa-f:]*\d)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
        r"(?:%[0-9A-Za-z._]+)?(?![\w:]|\.\d)"), valid_ip_zone),
    ("IP_ADDRESS", re.compile(_lead(r"\d", r"[\w.]") + r"(?<!version \d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w]|\.\d)"),
     valid_ip),  # IPv4
]


# cheap tests that skip a slow pattern on texts it cannot match
_OBF_GATE = re.compile(r"[\[({<][ \t]*(?:at|AT|ät|arobase|@|dot|DOT|punkt|point|\.)[ \t]*[\])}>]| AT | DOT ")
_V6_GATE = re.compile(r"[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:")
_GATES = {PATTERNS[0][1]: lambda t: "@" in t,
          PATTERNS[1][1]: lambda t: _OBF_GATE.search(t) is not None,
          PATTERNS[9][1]: lambda t: _V6_GATE.search(t) is not None}
_SHRINKABLE = {"PHONE", "IBAN"}
_LAST_GROUP = re.compile(r"[ ./-]+\(?[0-9A-Z]+\)?$")


def _shrinks(candidate: str, max_drop: int = 3) -> Iterable[str]:
    """``candidate``, then with its last separated group dropped, up to ``max_drop`` times."""
    yield candidate
    for _ in range(max_drop):
        shorter = _LAST_GROUP.sub("", candidate)
        if shorter == candidate or not shorter:
            return
        candidate = shorter
        yield candidate


@dataclass
class Match:
    start: int
    end: int
    type: str


def find_pii(text: str, ner: NerHook | None = None, types: Iterable[str] | None = None,
             names: str = "contact") -> list[Match]:
    """Validated, non-overlapping PII spans in ``text``, sorted by start. ``names``: person names
    in contact contexts (``"contact"``), also in running prose (``"all"``), or none (``"off"``);
    ``ner``: a user's span detector whose spans become ``<PERSON>`` too."""
    if names not in NAME_SCOPES:
        raise ValueError(f"names={names!r}: choose one of {NAME_SCOPES}")
    wanted = set(types) if types is not None else set(PLACEHOLDERS)
    found: list[Match] = []
    taken = bytearray(len(text))

    def take(s: int, e: int, kind: str) -> None:
        if not any(taken[s:e]):
            taken[s:e] = b"\x01" * (e - s)
            found.append(Match(s, e, kind))

    for kind, pattern, valid in PATTERNS:
        if kind not in wanted or (pattern in _GATES and not _GATES[pattern](text)):
            continue
        for m in pattern.finditer(text):
            s, e = m.span()
            if kind == "IP_ADDRESS" and ":" not in m.group() and s > 0 and text[s - 1] in "vV":
                continue  # v1.2.3.4 is a version
            if kind in _SHRINKABLE:  # a greedy match may have swallowed a neighbouring group
                e = next((s + len(c) for c in _shrinks(m.group()) if valid(c)), -1)
                if e < 0:
                    continue
            elif not valid(m.group()):
                continue
            take(s, e, kind)
    want_names = names != "off" and "PERSON" in wanted
    if want_names or wanted & {"ADDRESS", "PHONE"}:
        anchors = [(m.start, m.end) for m in found if m.type in ("EMAIL", "PHONE")]
        windows = pii_contact.contact_windows(text, anchors)
        if windows:
            if "PHONE" in wanted:
                for s, e in pii_contact.phones_in(text, windows):
                    take(s, e, "PHONE")
                anchors = [(m.start, m.end) for m in found if m.type in ("EMAIL", "PHONE")]
            if "ADDRESS" in wanted:
                for s, e in pii_contact.addresses_in(text, windows):
                    take(s, e, "ADDRESS")
        if want_names:
            for s, e in pii_contact.names_in_contact(text, anchors, windows=windows):
                take(s, e, "PERSON")
            if names == "all":
                for s, e in pii_contact.names_anywhere(text):
                    take(s, e, "PERSON")
    if ner is not None and "PERSON" in wanted:
        for s, e in ner(text):
            take(s, e, "PERSON")
    return sorted(found, key=lambda m: m.start)


def redact(text: str, ner: NerHook | None = None, types: Iterable[str] | None = None,
           names: str = "contact") -> tuple[str, Counter]:
    """``text`` with each PII span replaced by its placeholder, and counts per type."""
    matches = find_pii(text, ner, types, names)
    counts: Counter = Counter(m.type for m in matches)
    if not matches:
        return text, counts
    out, pos = [], 0
    for m in matches:
        out += [text[pos : m.start], PLACEHOLDERS[m.type]]
        pos = m.end
    out.append(text[pos:])
    return "".join(out), counts


@dataclass
class PiiRedactor:
    """Table step: redact the text column, count placeholders per type and changed docs."""

    ner: NerHook | None = None
    types: tuple[str, ...] | None = None
    names: str = "contact"
    text_column: str = "text"
    stats: Counter = field(default_factory=Counter)

    def __call__(self, table: pa.Table) -> pa.Table:
        texts = table.column(self.text_column).to_pylist()
        out = []
        for t in texts:
            red, counts = redact(t or "", self.ner, self.types, self.names)
            out.append(red)
            self.stats.update({f"redacted_{k.lower()}": v for k, v in counts.items()})
            self.stats["docs_changed"] += bool(counts)
            self.stats["chars_removed"] += len(t or "") - len(red)
        self.stats["docs_in"] += table.num_rows
        idx = table.schema.get_field_index(self.text_column)
        return table.set_column(idx, self.text_column, pa.array(out, pa.string()))

"""PII redaction: recall on planted PII, look-alikes intact, validators."""

import functools

import pyarrow as pa
import pytest

from deeprecipe.stages import pii_redact as pr
from deeprecipe.stages.labelled_corpus import make_corpus


@functools.lru_cache(maxsize=1)
def corpus():
    return make_corpus(seed=1, natural=0, near_pairs=0, far_pairs=0, spam=0, pii=400, code=0, math=0,
                       boilerplate_docs=0)


def test_recall_and_lookalikes_on_labelled_corpus():
    docs, truth = corpus()
    redactor = pr.PiiRedactor()
    out = redactor(docs)
    red = dict(zip(out.column("id").to_pylist(), out.column("text").to_pylist()))
    t = truth.to_pandas()
    pii, look = t[t.kind == "pii"], t[t.kind == "lookalike"]
    hit = [s not in red[d] for d, s in zip(pii.doc_id, pii.text)]
    recall = sum(hit) / len(hit)
    per_type = pii.assign(hit=hit).groupby("label").hit.mean().to_dict()
    altered = [s not in red[d] for d, s in zip(look.doc_id, look.text)]
    altered_rate = sum(altered) / len(altered)
    print(f"PII recall {recall:.4f} over {len(hit)} ({per_type}); look-alikes altered {altered_rate:.4f} "
          f"over {len(altered)}; stats {dict(redactor.stats)}")
    missed = [s for s, h in zip(pii.text, hit) if not h]
    assert recall >= 0.99, missed[:10]
    assert altered_rate <= 0.01, [s for s, a in zip(look.text, altered) if a][:10]
    n_placeholders = sum(text.count(p) for text in red.values() for p in pr.PLACEHOLDERS.values())
    assert n_placeholders == sum(v for k, v in redactor.stats.items() if k.startswith("redacted_"))
    assert redactor.stats["docs_in"] == docs.num_rows


@pytest.mark.parametrize("text,kind", [
    ("mail jane.doe+x@mail.example.co.uk now", "EMAIL"),
    ("call (415) 555-2671 today", "PHONE"),
    ("call 1-800-275-2273", "PHONE"),
    ("ring +44 20 7946 0958", "PHONE"),
    ("ring +49 (30) 901820", "PHONE"),
    ("host 10.0.0.12 is down", "IP_ADDRESS"),
    ("v6 2001:db8:85a3::8a2e:370:7334 up", "IP_ADDRESS"),
    ("v6 fe80::1 up", "IP_ADDRESS"),
    ("card 4111 1111 1111 1111 exp", "CARD"),
    ("amex 3782-822463-10005", "CARD"),
    ("ssn 078-05-1120", "SSN"),
    ("iban GB82 WEST 1234 5698 7654 32 ok", "IBAN"),
    ("iban DE89370400440532013000 ok", "IBAN"),
])
def test_detects(text, kind):
    red, counts = pr.redact(text)
    assert counts == {kind: 1}, (red, counts)
    assert pr.PLACEHOLDERS[kind] in red


@pytest.mark.parametrize("text", [
    "Released v1.2.3.4 and version 10.0.19041.1 on 2023-04-15.",
    "Python 3.11.4 costs $1,299.99 or €45.00; ISBN 978-3-16-148410-0 and 0-306-40615-2.",
    "x^2 + 3x - 4 = 0; 3.14159; 1/2; 12:30:45; std::vector<int> v(10); a::b",
    "card-like 4111 1111 1111 1112 and order 1234567890123456 and 1234567890",
    "SSN-like 666-12-3456 or 900-12-3456; IBAN-like DE00370400440532013000",
    "MAC 00:1A:2B:3C:4D:5E; dates 15.04.2023, 04/15/2023; phone-like 123-456-7890; 555-0132",
    "from 1990-2020 the value rose 1,234,567 and 999.12.3.4 is no address",
])
def test_leaves_lookalikes_intact(text):
    red, counts = pr.redact(text)
    assert red == text and not counts, counts


def test_ner_hook_is_pluggable_and_off_by_default():
    text = "Ada Lovelace wrote to ada@example.com"
    assert pr.redact(text)[0] == "Ada Lovelace wrote to <EMAIL>"
    hook = lambda s: [(0, 12)] if s.startswith("Ada Lovelace") else []  # noqa: E731
    red, counts = pr.redact(text, ner=hook)
    assert red == "<PERSON> wrote to <EMAIL>" and counts == {"PERSON": 1, "EMAIL": 1}


def test_validators():
    assert pr.luhn_valid("79927398713") and not pr.luhn_valid("79927398710")
    assert pr.valid_iban("GB82WEST12345698765432") and not pr.valid_iban("GB83WEST12345698765432")
    assert pr.valid_ip("::1") and not pr.valid_ip("256.1.1.1")


def test_table_step_keeps_other_columns():
    t = pa.table({"id": ["a"], "text": ["mail a@b.org"], "lang": ["en"]})
    out = pr.PiiRedactor()(t)
    assert out.column_names == t.column_names and out.column("text").to_pylist() == ["mail <EMAIL>"]

"""PII redaction: recall on planted PII, look-alikes intact, validators."""

import functools

import pyarrow as pa
import pytest

from deeprecipe.stages import pii_redact as pr
from deeprecipe.stages.generators.labelled_corpus import make_corpus


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


# --------------------------------------------------------------------------------------------
# issue 27: names, international contact formats, on a labelled set derived from real pages
# --------------------------------------------------------------------------------------------

import os  # noqa: E402

from deeprecipe.stages import pii_labelled as pl  # noqa: E402

LABELLED = os.path.join(os.path.dirname(__file__), "data", "pii_labelled.jsonl.gz")
REAL_WARC = [p for p in (os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real_pages",
                                      "pages.warc.gz"), "/work/shared/data/real_pages/pages.warc.gz")
             if os.path.exists(p)]
NAME_LOOKALIKES = ("place", "brand", "common_noun", "product_code", "contact_lookalike")


@functools.lru_cache(maxsize=2)
def labelled_score(names: str) -> dict:
    docs = pl.read(LABELLED)
    return pl.score(docs, lambda t: [(m.start, m.end, m.type) for m in pr.find_pii(t, names=names)])


def _rate(pair):
    return pair[0] / pair[1]


def test_labelled_set_is_derived_from_the_real_pages():
    if not REAL_WARC:
        pytest.skip("shared/data/real_pages absent")
    assert pl.build(REAL_WARC[0], n_docs=300, seed=0) == pl.read(LABELLED)


def test_labelled_set_recall_precision_per_type_default():
    s = labelled_score("contact")
    print({k: f"{_rate(v):.3f} ({v[0]}/{v[1]})" for k, v in s["recall"].items()})
    for key, pair in s["recall"].items():
        kind, ctx = key.split("/")
        assert pair[1] >= 30, key  # enough cases to mean something
        if kind == "PERSON":
            # names in contact contexts redacted, public names in running prose kept
            assert _rate(pair) >= (0.95 if ctx == "contact" else 0.0), (key, pair)
            assert ctx == "contact" or pair[0] == 0, (key, pair)
        else:
            assert _rate(pair) >= 0.99, (key, pair)
    for kind, pair in s["precision"].items():
        assert pair[1] and _rate(pair) >= 0.99, (kind, pair)
    assert s["detections_in_real_text"] == {k: 0 for k in s["precision"]}, s["samples"]
    alt = s["lookalikes_altered"]
    names_alt = [alt[k] for k in NAME_LOOKALIKES]
    other_alt = [v for k, v in alt.items() if k not in NAME_LOOKALIKES]
    assert sum(a for a, _ in names_alt) <= 0.02 * sum(n for _, n in names_alt), alt
    assert sum(a for a, _ in other_alt) <= 0.01 * sum(n for _, n in other_alt), alt


def test_labelled_set_all_names_scope():
    s = labelled_score("all")
    assert _rate(s["recall"]["PERSON/prose"]) >= 0.85 and _rate(s["recall"]["PERSON/contact"]) >= 0.95
    assert s["detections_in_real_text"]["PERSON"] > 0  # real prose has real names; they go too


@pytest.mark.parametrize("text,kind", [
    ("call +49 30 12345678 or", "PHONE"), ("call +49 (0)89 123 4567 or", "PHONE"), ("ring 0049 40 1234567 now", "PHONE"),
    ("ring +33 1 23 45 67 89 now", "PHONE"), ("ring +33 6.12.34.56.78 now", "PHONE"), ("tél 01 23 45 67 89 ok", "PHONE"),
    ("ring +44 (0)161 496 0000 now", "PHONE"), ("ring +91 98765 43210 now", "PHONE"), ("ring +86 138 0013 8000 now", "PHONE"),
    ("ring +81 3-1234-5678 now", "PHONE"), ("ring 090-1234-5678 now", "PHONE"), ("ring +55 11 91234-5678 now", "PHONE"),
    ("ring (11) 91234-5678 now", "PHONE"),
    ("mail jane.doe [at] example [dot] com today", "EMAIL"), ("mail info (at) firma (punkt) de today", "EMAIL"),
    ("mail kenji AT example DOT org today", "EMAIL"), ("mail a.b@example[.]com today", "EMAIL"),
    ("host 2001:db8:: up", "IP_ADDRESS"), ("host fe80::1ff:fe23:4567:890a%eth0 up", "IP_ADDRESS"),
    ("host ::ffff:192.0.2.128 up", "IP_ADDRESS"), ("host [2001:db8::1]:443 up", "IP_ADDRESS"),
])
def test_detects_international_formats(text, kind):
    red, counts = pr.redact(text)
    assert counts == {kind: 1}, (red, counts)


@pytest.mark.parametrize("text,expected", [
    ("Best regards,\nSiobhan O'Connor", "Best regards,\n<PERSON>"),
    ("Mit freundlichen Grüßen\nJürgen von Hagen\nRedakteur", "Mit freundlichen Grüßen\n<PERSON>\nRedakteur"),
    ("Thanks, Anna", "Thanks, <PERSON>"),
    ("Oluwaseun Adeyemi says:\nMarch 3, 2021 at 10:15 am\nGreat post.",
     "<PERSON> says:\nMarch 3, 2021 at 10:15 am\nGreat post."),
    ("Press contact: Dr. Julia Fischer, +49 30 1234567", "Press contact: <PERSON>, <PHONE>"),
    ("For more information, contact Marie Dubois at marie@example.fr.",
     "For more information, contact <PERSON> at <EMAIL>."),
    ("Thandiwe Nkosi <t.nkosi@example.org>", "<PERSON> <<EMAIL>>"),
    ("Kontakt:\nLukas Weber\nAcme GmbH\nHauptstraße 12a, 10115 Berlin\nTel.: 030 12345678\nE-Mail: lw (at) acme (dot) de",
     "Kontakt:\n<PERSON>\nAcme GmbH\n<ADDRESS>\nTel.: <PHONE>\nE-Mail: <EMAIL>"),
    ("Contact\nPriya Raman\n221B Baker Street, London NW1 6XE\nPhone: 020 7946 0958",
     "Contact\n<PERSON>\n<ADDRESS>\nPhone: <PHONE>"),
])
def test_contact_contexts(text, expected):
    assert pr.redact(text)[0] == expected


@pytest.mark.parametrize("text", [
    "Chancellor Anna Schmidt said on Tuesday that the plan would be reviewed.",  # running prose: kept by default
    "By Sarah Miller | 2023-04-15",  # a byline: the author of a published article
    "Contact: Customer Service",
    "Kontakt: Stadtverwaltung Florenz",
    "Best regards,\nThe Acme Team",
    "Viele Grüße\nIhr Team von Orlando Reisen",
    "We drove from Florence to Sydney via Victoria Station; Jordan won 3-1.",
    "The new Mercedes-Benz and a Dell XPS 13 cost €45.00 at Tim Hortons.",
    "Order SKU AB-1234-X, RTX 4090 or ISO 9001:2015 before 12.04.2023.",
    "The fire at 12 Baker Street was put out.",  # addresses only in contact blocks
    "std::vector<int> v; ratio 1:2:3; MAC 00:1A:2B:3C:4D:5E; 12:30:45; UTC+01:00",
    "see you [at] the office; look at the dot com bubble; order no. 0012 3456",
])


def test_default_keeps(text):
    red, counts = pr.redact(text)
    assert red == text and not counts, counts


def test_capitalised_nouns_before_a_phone_in_prose_are_no_name():
    # generated crawl, seed 0: a German sentence with a planted phone; "Ende der Woche" was taken
    text = "Gleichzeitig überprüft das Krankenhaus eine öffentliche Debatte am Ende der Woche ((935) 236-7203)."
    assert pr.redact(text) == (text.replace("(935) 236-7203", "<PHONE>"), {"PHONE": 1})
    assert pr.redact("Jane Doe ((935) 236-7203)")[0] == "<PERSON> (<PHONE>)"  # a short contact line


def test_all_names_scope_redacts_prose_and_bylines():
    assert pr.redact("Chancellor Anna Schmidt said it.", names="all")[0] == "Chancellor <PERSON> said it."
    assert pr.redact("By Sarah Miller | 2023-04-15", names="all")[0] == "By <PERSON> | 2023-04-15"
    assert pr.redact("We drove from Florence to Sydney.", names="all")[1] == {}
    with pytest.raises(ValueError):
        pr.redact("x", names="everyone")


def test_names_off_and_types_filter():
    text = "Best regards,\nAnna Schmidt\nTel.: 030 12345678"
    assert pr.redact(text, names="off")[0] == "Best regards,\nAnna Schmidt\nTel.: <PHONE>"
    assert pr.redact(text, types=["PERSON"])[0] == "Best regards,\n<PERSON>\nTel.: 030 12345678"
    hook = lambda s: [(0, 4)]  # noqa: E731  a user's model adds spans on top of the built-in ones
    assert pr.redact(text, ner=hook)[1] == {"PERSON": 2, "PHONE": 1}


def test_stage_parameter_keep_public_names():
    from luigi.cmdline_parser import CmdlineParser

    from deeprecipe.workflows import PiiRedact  # noqa: F401  (registers the task with luigi)
    with CmdlineParser.global_instance(["PiiRedact"]) as cp:
        assert cp.get_task_obj().stage_params["keep_public_names"] is True
    with CmdlineParser.global_instance(["PiiRedact", "--keep-public-names", "false"]) as cp:
        assert cp.get_task_obj().stage_params["keep_public_names"] is False
    t = pa.table({"id": ["a"], "text": ["Minister Anna Schmidt said so.\nBest regards,\nLukas Weber"]})
    assert pr.PiiRedactor(names="contact")(t).column("text").to_pylist() == [
        "Minister Anna Schmidt said so.\nBest regards,\n<PERSON>"]
    assert pr.PiiRedactor(names="all")(t).column("text").to_pylist() == ["Minister <PERSON> said so.\nBest regards,\n<PERSON>"]


@pytest.mark.parametrize("text,expected", [
    # contact formats outside the labelled set's templates, written after it (BENCHMARKS: probe)
    ("Ansprechpartnerin: Frau Dr. Maria Huber, Tel. 089 / 123 456-78", "Ansprechpartnerin: <PERSON>, Tel. <PHONE>"),
    ("Pressekontakt | Max Mustermann | +49 171 2345678 | max@firma.de", "Pressekontakt | <PERSON> | <PHONE> | <EMAIL>"),
    ("Reply\nMark Thompson\nMarch 4, 2022 at 3:12 pm\nSpot on.", "Reply\n<PERSON>\nMarch 4, 2022 at 3:12 pm\nSpot on."),
    ("Contact: J. Smith (jsmith@example.com)", "Contact: <PERSON> (<EMAIL>)"),
    ("Interlocutrice : Mme Claire Fontaine — 01 45 67 89 10", "Interlocutrice : <PERSON> — <PHONE>"),
    ("Ihre Ansprechpartner: Anna Schmidt und Lukas Weber", "Ihre Ansprechpartner: <PERSON> und <PERSON>"),
    ("Tel: +49 (0) 30 / 1234 5678", "Tel: <PHONE>"),
    ("Call us on 0800 123 4567 (UK freephone)", "Call us on <PHONE> (UK freephone)"),
    ("Mob: 07912 345678", "Mob: <PHONE>"),
    ("Kontakt\nMuster GmbH\nMusterstraße 1\n12345 Musterstadt\nTelefon 030 1234567",
     "Kontakt\nMuster GmbH\n<ADDRESS>\nTelefon <PHONE>"),
    ("Contact Us | Privacy Policy | Imprint", "Contact Us | Privacy Policy | Imprint"),
    ("Kontaktformular: Schreiben Sie uns!", "Kontaktformular: Schreiben Sie uns!"),
    ("Posted by admin on 2021-01-01", "Posted by admin on 2021-01-01"),
    ("Best,\nThe Editors", "Best,\nThe Editors"),
    ("Mark as read\nMarch 4, 2022", "Mark as read\nMarch 4, 2022"),
    ("In 1/2 of cases the price fell 10 / 20 %; we call on 0800 numbers", None),
])
def test_contact_probe(text, expected):
    assert pr.redact(text)[0] == (text if expected is None else expected)


@pytest.mark.parametrize("text,expected", [
    # shapes seen on the real pages' full text (footers, imprints, comment sections)
    ("Antworten\n2. Michael Blahm sagt:\n2. April 2014 um 8:29 Uhr", "Antworten\n2. <PERSON> sagt:\n2. April 2014 um 8:29 Uhr"),
    ("• Klaus-Peter Baumgardt sagt:\n7. Dez 2018", "• <PERSON> sagt:\n7. Dez 2018"),
    ("Lieben Gruß\nJasmin\n\nAntworten", "Lieben Gruß\n<PERSON>\n\nAntworten"),
    ("solutions@example.com\n\nT 919-951-0052\n\n108 Morris St, Suite 2\nDurham, NC 27701",
     "<EMAIL>\n\nT <PHONE>\n\n<ADDRESS>"),
    ("Creative Commons\nPO Box 1866, Mountain View, CA 94042\ninfo@example.org", "Creative Commons\n<ADDRESS>\n<EMAIL>"),
    ("Nymphenburger Straße 4\nDE-80335 München\nTel. +49 (0) 89 20 80 27 250", "<ADDRESS>\nTel. <PHONE>"),
    # a post's byline has the shape of a comment header; without a reply link it stays
    ("Dieser Wahlkampf wurde im Internet entschieden\nMarkus Beckedahl - 27.05.2019 um 13:18 Uhr\n91 Ergänzungen", None),
    # a short sentence under a contact block is no name line
    ("Tel 01 87 99 77 28\n\nHat Freenet Pläne, die Vermarktung der Werbeinhalte selber in die Hand zu nehmen?",
     "Tel <PHONE>\n\nHat Freenet Pläne, die Vermarktung der Werbeinhalte selber in die Hand zu nehmen?"),
])
def test_real_page_shapes(text, expected):
    assert pr.redact(text)[0] == (text if expected is None else expected)

"""PII redaction: precision/recall per type on a labelled set built from real pages, the
person-name candidates side by side, and throughput on the generated crawl.

    python -m bench.pii                       # all measurements (set from tests/data if no WARC)
    python -m bench.pii --write               # rebuild tests/data/pii_labelled.jsonl.gz from the WARC
    python -m bench.pii --warc ../shared/data/real_pages/pages.warc.gz --docs 300 --pages 3000

Name candidates (each scored on the same documents, PERSON spans only; the other types come from
the default detector):

- ``gazetteer_anywhere``: two or more capitalised tokens whose first is a given name of
  gender-guesser's gazetteer, anywhere (what a gazetteer alone gives).
- ``census_gazetteer_context``: contact-context rules with the US census first names of the
  ``names`` package (5,494 names) as the gazetteer.
- ``names_dataset_gazetteer_context`` / ``names_dataset_strong_slots``: the same rules with the
  first names of ``names-dataset`` (MIT) ranked in a country's top 5,000 as the gazetteer
  (727k names raw; 20 s and 2 GB of RAM to load, so not a per-worker default).
- ``context_only``: contact-context rules, no gazetteer (any capitalised run not an
  organisation word).
- ``context_probablepeople``: contact-context runs (no gazetteer) kept when ``probablepeople``'s
  CRF labels the run ``Person``.
- ``context_tagger_p0.1`` / ``_p0.5``: contact-context runs kept when a small logistic-regression
  tagger, trained here on the real pages' full text with silver labels from the gazetteer
  (``train_tagger``), gives the run's first token a name-start probability of at least 0.1 / 0.5
  (needs the WARC).
- ``context_gazetteer``: contact-context rules, gender-guesser's gazetteer required everywhere.
- ``context_gazetteer_strong_slots`` (the default): as above, but slots that hold a name whatever
  its origin ("Name:", before "<email>", before " says:", the line after a closing) need no
  gazetteer hit.

The machine these numbers come from was shared with other jobs (2 cores, four engineers):
throughput is a lower bound and varies run to run.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import zlib
import time

from deeprecipe.stages import pii_contact as pc
from deeprecipe.stages import pii_labelled as pl
from deeprecipe.stages import pii_redact as pr

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WARC = os.path.join(HERE, "..", "..", "shared", "data", "real_pages", "pages.warc.gz")
SHARED_WARC = "/work/shared/data/real_pages/pages.warc.gz"
LABELLED = os.path.join(HERE, "..", "tests", "data", "pii_labelled.jsonl.gz")


def detector(names: str = "contact"):
    return lambda t: [(m.start, m.end, m.type) for m in pr.find_pii(t, names=names)]


def _names_dataset_given(max_rank: int = 5000) -> frozenset[str]:
    """First names of ``names-dataset`` (MIT; 727k entries, 20 s and 2 GB to load) ranked within
    ``max_rank`` in at least one country, minus the words ``given_names`` also drops."""
    from names_dataset import NameDataset
    first = NameDataset().first_names
    return frozenset(n for n, v in first.items() if n.isalpha() and n[0].isupper() and len(n) > 1
                     and min((v.get("rank") or {}).values() or [10**9]) <= max_rank) - pc._NOT_GIVEN


_names_dataset_given_cached = functools.lru_cache(maxsize=1)(_names_dataset_given)


def _census_given() -> frozenset[str]:
    import names as census
    d = os.path.dirname(census.__file__)
    out = set()
    for f in ("dist.male.first", "dist.female.first"):
        with open(os.path.join(d, f)) as fh:
            out |= {line.split()[0].capitalize() for line in fh if line.strip()}
    return frozenset(out)


def _probablepeople_filter(text: str, spans):
    import probablepeople
    keep = []
    for s, e in spans:
        try:
            _, kind = probablepeople.tag(text[s:e])
        except probablepeople.RepeatedLabelError:
            continue
        if kind == "Person":
            keep.append((s, e))
    return keep


# --- a small tagger trained here from gazetteer-labelled text --------------------------------
_TAG_TOKEN = re.compile(r"[^\W\d_][\w'’-]*|\d+|[^\w\s]")
_TAG_DIM = 1 << 18


def _shape(t: str) -> str:
    if not t:
        return "<none>"
    if t[0].isdigit():
        return "9"
    if not t[0].isalpha():
        return "p" + t
    return ("XX" if len(t) > 1 else "X") if t.isupper() else ("Xx" if t[0].isupper() else "x")


def _word_or_shape(t: str) -> str:
    return t.lower() if t[:1].islower() or not t[:1].isalpha() else _shape(t)


def _tag_features(toks: list[str], i: int) -> list[int]:
    t = toks[i]
    at = lambda k: toks[k] if 0 <= k < len(toks) else ""  # noqa: E731
    f = ["w=" + t, "b", "suf3=" + t[-3:].lower(), "suf2=" + t[-2:].lower(), "len=" + str(min(len(t), 10)),
         "p1=" + _word_or_shape(at(i - 1)), "p2=" + _word_or_shape(at(i - 2)), "n1s=" + _shape(at(i + 1)),
         "n2s=" + _shape(at(i + 2)), "n1=" + ("CAP" if at(i + 1)[:1].isupper() else at(i + 1).lower()),
         "start=" + str(i == 0), "n1org=" + str(at(i + 1) in pc.ORG_WORDS)]
    return [zlib.crc32(x.encode()) % _TAG_DIM for x in f]


def train_tagger(texts: list[str], epochs: int = 5, lr: float = 0.2):
    """Logistic regression over hashed token features (word, suffixes, neighbours' words and
    shapes, line start). Silver labels from the gazetteer: a capitalised given name followed by a
    capitalised non-organisation word starts a name (1); a capitalised word outside the gazetteer
    does not (0). Returns ``p(text, start) -> probability that a name starts there``."""
    import numpy as np
    given = pc.given_names()
    X, y = [], []
    for text in texts:
        for line in text.split("\n"):
            toks = _TAG_TOKEN.findall(line)
            for i, t in enumerate(toks):
                if not (t[:1].isupper() and t[1:2].islower()):
                    continue
                n1 = toks[i + 1] if i + 1 < len(toks) else ""
                if t in given and n1[:1].isupper() and n1 not in pc.ORG_WORDS:
                    X.append(_tag_features(toks, i)), y.append(1)
                elif t not in given:
                    X.append(_tag_features(toks, i)), y.append(0)
    w = np.zeros(_TAG_DIM)
    order = np.arange(len(X))
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        rng.shuffle(order)
        for k in order:
            f = X[k]
            w[f] -= lr * (1 / (1 + np.exp(-w[f].sum())) - y[k])
    print(f"  (tagger: {len(X)} capitalised tokens, {sum(y)} silver name starts)")

    def prob(text: str, start: int) -> float:
        ls = text.rfind("\n", 0, start) + 1
        le = text.find("\n", start)
        line = text[ls:(len(text) if le < 0 else le)]
        spans = [m for m in _TAG_TOKEN.finditer(line)]
        idx = next((i for i, m in enumerate(spans) if m.start() >= start - ls), None)
        if idx is None:
            return 0.0
        return float(1 / (1 + np.exp(-w[_tag_features([m.group() for m in spans], idx)].sum())))
    return prob


def full_page_texts(warc: str) -> list[str]:
    """The pages' full text (footers, imprints, comments kept)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree
    from warcio.archiveiterator import ArchiveIterator

    from deeprecipe.stages.crawl_ingest import decode_html
    out = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type != "response":
                continue
            html = decode_html(rec.content_stream().read(), None)
            if html:
                out.append(extract_plain_text(HTMLTree.parse(html), main_content=False, preserve_formatting=True,
                                              comments=True, links=False, alt_texts=False, form_fields=False))
    return out


def name_candidates(warc: str | None = None) -> dict:
    """name -> text -> [(start, end)] person spans."""
    def ctx(policy, given=None, post=None):
        def find(text):
            anchors = [(m.start, m.end) for m in pr.find_pii(text, names="off") if m.type in ("EMAIL", "PHONE")]
            spans = pc.names_in_contact(text, anchors, given=given, policy=policy)
            return post(text, spans) if post else spans
        return find
    out = {"gazetteer_anywhere": lambda t: pc.names_anywhere(t)}
    optional = {  # candidates whose package is in the bench extra; skipped when it is not installed
        "census_gazetteer_context": lambda: ctx("always", given=_census_given()),
        "names_dataset_gazetteer_context": lambda: ctx("always", given=_names_dataset_given_cached()),
        "names_dataset_strong_slots": lambda: ctx("strong_slots", given=_names_dataset_given_cached()),
    }
    for name, make in optional.items():
        try:
            out[name] = make()
        except ImportError as e:
            print(f"  ({name} skipped: {e})")
    try:
        import probablepeople  # noqa: F401
        out["context_probablepeople"] = ctx("never", post=_probablepeople_filter)
    except ImportError as e:
        print(f"  (context_probablepeople skipped: {e})")
    if warc:
        tagger = train_tagger(full_page_texts(warc))
        for th in (0.1, 0.5):
            out[f"context_tagger_p{th}"] = ctx("never", post=lambda t, sp, th=th: [x for x in sp if tagger(t, x[0]) >= th])
    return out | {
        "context_only": ctx("never"),
        "context_gazetteer": ctx("always"),
        "context_gazetteer_strong_slots": ctx("strong_slots"),
    }


def ratio(pair) -> str:
    h, n = pair
    return f"{h / n:.3f} ({h}/{n})" if n else "n/a (0/0)"


def load_docs(warc: str | None, n_docs: int) -> tuple[list[dict], str]:
    for path in (warc, DEFAULT_WARC, SHARED_WARC):
        if path and os.path.exists(path):
            return pl.build(path, n_docs=n_docs, seed=0), path
    return pl.read(LABELLED), LABELLED


def bench_types(docs) -> None:
    for scope in ("contact", "all"):
        s = pl.score(docs, detector(scope))
        print(f"\n## detector names={scope!r}: recall per type/context")
        for k, v in s["recall"].items():
            print(f"  {k:22s} {ratio(v)}")
        print("  precision (detections overlapping a planted item of the type / detections outside the real paragraphs):")
        for k, v in s["precision"].items():
            print(f"  {k:22s} {ratio(v)}   detections inside real paragraphs: {s['detections_in_real_text'][k]}")
        alt = s["lookalikes_altered"]
        tot = (sum(a for a, _ in alt.values()), sum(n for _, n in alt.values()))
        print(f"  look-alikes altered: {ratio(tot)}; " + ", ".join(f"{k} {a}/{n}" for k, (a, n) in alt.items()))
        for k, v in s["samples"].items():
            print(f"  sample {k}: {v[:5]}")


def bench_names(docs, warc: str | None = None) -> None:
    print("\n## person-name candidates (PERSON spans only)")
    print(f"  {'candidate':32s} {'recall contact':>18s} {'prose names altered':>20s} {'look-alikes altered':>20s}"
          f" {'precision':>18s} {'in real text':>12s} {'ms/doc':>7s}")
    for name, find in name_candidates(warc).items():
        t0 = time.process_time()
        s = pl.score(docs, lambda t: [(a, b, "PERSON") for a, b in find(t)], types=["PERSON"])
        ms = (time.process_time() - t0) * 1000 / len(docs)
        alt = s["lookalikes_altered"]
        names_look = [k for k in alt if k in ("place", "brand", "common_noun", "product_code", "contact_lookalike")]
        look = (sum(alt[k][0] for k in names_look), sum(alt[k][1] for k in names_look))
        print(f"  {name:32s} {ratio(s['recall']['PERSON/contact']):>18s} {ratio(s['recall']['PERSON/prose']):>20s}"
              f" {ratio(look):>20s} {ratio(s['precision']['PERSON']):>18s}"
              f" {s['detections_in_real_text']['PERSON']:>12d} {ms:7.2f}")


def crawl_texts(n_pages: int) -> list[str]:
    from deeprecipe.stages.generators.crawl_pages import render_page
    from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
    config = SyntheticCrawlConfig(seed=0)
    return [render_page(config, i).article_text() for i in range(n_pages)]


def bench_throughput(n_pages: int) -> None:
    texts = crawl_texts(n_pages)
    chars = sum(map(len, texts))
    print(f"\n## throughput on the generated crawl ({len(texts)} pages, {chars / len(texts):.0f} chars/page, "
          "one process, CPU time; shared machine)")
    pc.given_names()
    for label, kw in (("regex types only (names off)", {"names": "off", "types": [t for t in pr.PLACEHOLDERS
                                                                                  if t not in ("PERSON", "ADDRESS")]}),
                      ("default (names='contact')", {}), ("names='all'", {"names": "all"})):
        best = 0.0
        for _ in range(3):
            t0 = time.process_time()
            for t in texts:
                pr.redact(t, **kw)
            best = max(best, len(texts) / (time.process_time() - t0))
        print(f"  {label:32s} {best:8.0f} docs/s per core (best of 3)")


def bench_full_pages(warc: str) -> None:
    """Every detection on the real pages' *full* text (footers, imprints and comment sections
    kept: resiliparse without main-content extraction), printed with context to be judged by
    hand: the only real contact blocks and comment headers this set has."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree
    from warcio.archiveiterator import ArchiveIterator

    from deeprecipe.stages.crawl_ingest import decode_html
    rows, pages = [], 0
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type != "response":
                continue
            html = decode_html(rec.content_stream().read(), None)
            if not html:
                continue
            pages += 1
            text = extract_plain_text(HTMLTree.parse(html), main_content=False, preserve_formatting=True,
                                      comments=True, links=False, alt_texts=False, form_fields=False)
            for m in pr.find_pii(text):
                ctx = text[max(0, m.start - 50):m.end + 30].replace("\n", " / ")
                rows.append((m.type, text[m.start:m.end], ctx))
    print(f"\n## detections on the full text of the {pages} real pages (judge by hand)")
    for t, v, ctx in sorted(rows):
        print(f"  {t:10s} {v!r:45s} {ctx!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warc", default=None)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--write", action="store_true", help=f"write the set to {LABELLED}")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--full-pages", action="store_true", help="list detections on the real pages' full text")
    args = ap.parse_args()
    docs, source = load_docs(args.warc, args.docs)
    print(f"labelled set: {len(docs)} documents from {source}; "
          f"{sum(len(d['items']) for d in docs)} planted items, {sum(len(d['lookalikes']) for d in docs)} look-alikes")
    if args.write:
        pl.write(docs, LABELLED)
        print(f"wrote {LABELLED}")
    bench_types(docs)
    bench_names(docs, source if source != LABELLED else None)
    if args.full_pages and source != LABELLED:
        bench_full_pages(source)
    if not args.skip_throughput:
        bench_throughput(args.pages)


if __name__ == "__main__":
    main()

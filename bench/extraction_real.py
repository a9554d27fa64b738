"""HTML main-text extractors on real pages, side by side in one run.

Per extractor (``stages/html_extract.py``'s ``EXTRACTORS``): must-contain strings found
(recall), must-not-contain strings leaked, precision and F1 by trafilatura's formula, pages that
came out empty, and pages per second on one core (the process is pinned to one CPU; best of
`--repeats` passes, the extractors taking turns). Every extractor gets the same decoded HTML (crawl_ingest's `decode_html`).
Scores are given on all pages and on the held-out half (`_real_pages.held_out`: the pages whose
URL hash is odd; the extraction rules were tuned on the other half only).

    python bench/extraction_real.py [--warc pages.warc.gz --expect expect.json] [--repeats 3]
                                    [--show-leaks EXTRACTOR] [--only NAME,NAME]

Defaults to `../shared/data/real_pages` (110 real pages, trafilatura's regression set).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._real_pages import Score, held_out, load_pages, page_leaks  # noqa: E402
from deeprecipe.stages import crawl_ingest as ci  # noqa: E402
from deeprecipe.stages import html_extract as hx  # noqa: E402
from deeprecipe.stages import quality_heuristics as qh  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc", type=Path)
    ap.add_argument("--expect", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated extractor names (default: all)")
    ap.add_argument("--show-leaks", default="", help="print missed/leaked strings of this extractor")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pages = load_pages(args.warc, args.expect)
    htmls = [ci.decode_html(p.html_bytes, p.http_charset) or "" for p in pages]
    names = [n for n in args.only.split(",") if n] or list(hx.EXTRACTORS)
    scores, code = {}, {}
    for name in names:
        every, held = Score(), Score()
        kinds = []
        for page, html in zip(pages, htmls):
            text = hx.EXTRACTORS[name](html)
            if text.strip():
                kinds.append(qh.content_kind(qh.score_text(text)))
            every.add(page, text)
            if held_out(page):
                held.add(page, text)
            if name == args.show_leaks:
                missed, leaked = page_leaks(page, text)
                if missed or leaked:
                    print(f"{page.url}\n  missed: {missed}\n  leaked: {leaked}")
        scores[name] = (every, held)
        code[name] = (kinds.count(qh.CODE), len(kinds))
    best = dict.fromkeys(names, float("inf"))
    for _ in range(args.repeats):  # extractors take turns, so a change of load hits all alike
        for name in names:
            extract = hx.EXTRACTORS[name]
            t0 = time.perf_counter()
            for html in htmls:
                extract(html)
            best[name] = min(best[name], time.perf_counter() - t0)
    rows = [(name, *scores[name], len(htmls) / best[name]) for name in names]
    e, h = rows[0][1], rows[0][2]
    print(f"\n{len(pages)} pages, {e.pages_with_expectations} with expectations ({h.pages_with_expectations} "
          f"held out), {e.contain} must-contain / {e.not_contain} must-not-contain strings "
          f"({h.contain} / {h.not_contain} held out); 'code' = pages whose text quality_heuristics "
          f"classes as code, of the non-empty ones")
    print("| extractor | found | leaked | precision | F1 | empty pages | held-out found | held-out leaked "
          "| held-out F1 | pages/s (1 core) | code |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, hs, rate in rows:
        print(f"| {name} | {s.recall:.3f} | {s.leak_rate:.3f} | {s.precision:.3f} | {s.f1:.3f} | "
              f"{len(s.empty_pages)} | {hs.recall:.3f} | {hs.leak_rate:.3f} | {hs.f1:.3f} | {rate:.0f} | "
              f"{code[name][0]}/{code[name][1]} |")


if __name__ == "__main__":
    main()

"""HTML main-text extractors on real pages, side by side in one run.

Per extractor: must-contain strings found (recall), must-not-contain strings leaked, precision
and F1 by trafilatura's formula, pages that came out empty, and pages per second on one core
(the process is pinned to one CPU; best of `--repeats` passes). Every extractor gets the same
decoded HTML (crawl_ingest's `decode_html`).

    python bench/extraction_real.py [--warc pages.warc.gz --expect expect.json] [--repeats 3]
                                    [--show-leaks EXTRACTOR]

Defaults to `../shared/data/real_pages` (110 real pages, trafilatura's regression set).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._real_pages import Score, load_pages, page_leaks  # noqa: E402
from deeprecipe.stages import crawl_ingest as ci  # noqa: E402


def trafilatura_text(html: str, fast: bool) -> str:
    import trafilatura
    return trafilatura.extract(html, include_comments=False, include_tables=True, fast=fast) or ""


def extractors() -> dict:
    out = {name: (lambda html, n=name: ci.html_main_text(html, extractor=n))
           for name in ci.EXTRACTORS}
    try:
        import trafilatura  # noqa: F401
        out["trafilatura (default)"] = lambda html: trafilatura_text(html, fast=False)
        out["trafilatura (fast)"] = lambda html: trafilatura_text(html, fast=True)
    except ImportError:
        print("trafilatura not installed (pip install -e '.[bench]'): compared with nothing",
              file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc", type=Path)
    ap.add_argument("--expect", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--show-leaks", default="", help="print missed/leaked strings of this extractor")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pages = load_pages(args.warc, args.expect)
    htmls = [ci.decode_html(p.html_bytes, p.http_charset) or "" for p in pages]
    rows = []
    for name, extract in extractors().items():
        score, texts = Score(), []
        for page, html in zip(pages, htmls):
            text = extract(html)
            texts.append(text)
            score.add(page, text)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for html in htmls:
                extract(html)
            best = min(best, time.perf_counter() - t0)
        rows.append((name, score, len(htmls) / best))
        if name == args.show_leaks:
            for page, text in zip(pages, texts):
                missed, leaked = page_leaks(page, text)
                if missed or leaked:
                    print(f"{page.url}\n  missed: {missed}\n  leaked: {leaked}")
    print(f"\n{len(pages)} pages, {rows[0][1].pages_with_expectations} with expectations, "
          f"{rows[0][1].contain} must-contain / {rows[0][1].not_contain} must-not-contain strings")
    print(f"| extractor | found | leaked | precision | F1 | empty pages | pages/s (1 core) |")
    print(f"|---|---|---|---|---|---|---|")
    for name, s, rate in rows:
        print(f"| {name} | {s.recall:.3f} | {s.leak_rate:.3f} | {s.precision:.3f} | {s.f1:.3f} | "
              f"{len(s.empty_pages)} | {rate:.0f} |")


if __name__ == "__main__":
    main()

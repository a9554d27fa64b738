"""Quality models on real text: real pages mixed with planted spam and boilerplate pages.

Runs quality_filter's steps (``bench/_quality_real.py``) on the main text of
`../shared/data/real_pages` (or ``--warc``/``--expect``) plus planted spam, once with the models
a real crawl gets now (``seed_source=auto`` on a ``--source`` crawl: the wordfreq reference LM,
per-language CCNet thresholds, fastText positives from the LM's head) and once with the
previous ones (Kneser-Ney and fastText on the generated seed, thresholds per domain). Prints
markdown: spam removed and articles kept (overall, per spam kind, per reason), the AUC of
perplexity and of the classifier score separating spam from articles, and the median
perplexity of real and of generated text under each reference LM.

    python bench/quality_real.py [--warc pages.warc.gz --expect expect.json] [--trafilatura]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _quality_real as q  # noqa: E402
from bench._real_pages import load_pages  # noqa: E402
from deeprecipe.profiles import tiny  # noqa: E402
from deeprecipe.stages import reference_texts  # noqa: E402


def report(name: str, docs: list, r: dict) -> None:
    spam = np.array([d.is_spam for d in docs])
    art = np.array([d.kind == "article" for d in docs])
    kept = r["kept"]
    print(f"\n### {name}\n")
    print(f"- spam removed: {1 - kept[spam].mean():.3f} ({int((~kept[spam]).sum())}/{int(spam.sum())})")
    print(f"- articles kept: {kept[art].mean():.3f} ({int(kept[art].sum())}/{int(art.sum())})")
    lost = Counter(x for d, rs, k in zip(docs, r["reasons"], kept) if d.kind == "article" and not k
                   for x in set(rs) & {"perplexity", "hq_score"})
    heur = sum(1 for d, rs, k in zip(docs, r["reasons"], kept) if d.kind == "article" and not k
               and set(rs) - {"perplexity", "hq_score", "lang"})
    print(f"- articles removed by a heuristic rule: {heur}; with perplexity / hq_score among their "
          f"reasons: {lost.get('perplexity', 0)} / {lost.get('hq_score', 0)}")
    print(f"- AUC spam vs articles: perplexity {q.auc(r['ppl'][spam], r['ppl'][art]):.3f}, "
          f"classifier (1 - hq_score) {q.auc(-r['hq_score'][spam], -r['hq_score'][art]):.3f}")
    print(f"- median perplexity: articles {np.median(r['ppl'][art]):,.0f}, spam {np.median(r['ppl'][spam]):,.0f}")
    print(f"- classifier scoring >= 0.5: articles {(r['hq_score'][art] >= 0.5).mean():.2f}, "
          f"spam {(r['hq_score'][spam] >= 0.5).mean():.2f}")
    print("\n| kind | docs | kept | removed by perplexity | median ppl | median hq_score | top reasons |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    by_kind = defaultdict(list)
    for d, rs, k, p, h in zip(docs, r["reasons"], kept, r["ppl"], r["hq_score"]):
        by_kind[d.kind].append((k, rs, p, h))
    for kind, rows in by_kind.items():
        reasons = Counter(x for row in rows for x in row[1])
        print(f"| {kind} | {len(rows)} | {sum(row[0] for row in rows)} | {reasons.get('perplexity', 0)} | "
              f"{np.median([row[2] for row in rows]):,.0f} | {np.median([row[3] for row in rows]):.3f} | "
              + ", ".join(f"{x} {n}" for x, n in reasons.most_common(3)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warc", type=Path)
    ap.add_argument("--expect", type=Path)
    ap.add_argument("--trafilatura", action="store_true", help="real pages' text by trafilatura "
                    "instead of crawl_ingest's extractor")
    args = ap.parse_args()
    pages = load_pages(args.warc, args.expect)
    extract = q.crawl_ingest.html_main_text
    if args.trafilatura:
        import trafilatura
        extract = trafilatura.extract
    real = q.real_docs(pages, extract)
    docs = real + q.spam_docs(real, pages)
    print(f"{len(real)} real pages ({sum(d.kind == 'article' for d in real)} articles), "
          f"{sum(d.is_spam for d in docs)} planted spam pages; languages "
          f"{dict(Counter(d.lang for d in real).most_common())}")

    t0 = time.perf_counter()
    lm_new = q.reference_lm(docs, extra_langs=("en", "de", "fr", "es"))  # + the generated crawl's
    new = q.run_filter(docs, lm_new)
    t_new = time.perf_counter() - t0
    report(f"now: wordfreq LM, thresholds per lang, fastText from the LM's head/tail "
           f"({new['positives']} positives, {new['negatives']} negatives), {t_new:.1f} s", docs, new)

    alone = q.run_filter(real, lm_new)
    art = np.array([d.kind == "article" for d in real])
    by_ppl_only = [d.url for d, rs in zip(real, alone["reasons"]) if d.kind == "article" and rs == ["perplexity"]]
    print(f"\nreal pages alone (no spam), same models: articles kept {alone['kept'][art].mean():.3f} "
          f"({int(alone['kept'][art].sum())}/{int(art.sum())}); removed by perplexity alone: {len(by_ppl_only)} "
          f"(the p95 cut always takes the top of a clean crawl) {by_ppl_only}")

    prof = tiny()
    old_prof = dataclasses.replace(prof, quality_filter=dataclasses.replace(
        prof.quality_filter, group_column="domain", min_group_docs=1))
    t0 = time.perf_counter()
    lm_old, clf_old = q.builtin_models(prof)
    old = q.run_filter(docs, lm_old, clf_old, old_prof)
    report(f"before: Kneser-Ney + fastText on the generated seed, thresholds per domain, "
           f"{time.perf_counter() - t0:.1f} s", docs, old)

    generated = reference_texts.builtin_trusted_texts(200, seed=7)  # not the LM's seed texts
    from deeprecipe.stages.generators.crawl_pages import render_natural_page
    from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
    config = SyntheticCrawlConfig(seed=7 + reference_texts.SEED_OFFSET)
    gen_langs = [render_natural_page(config, i).site.lang for i in range(len(generated))]
    art = [d for d in real if d.kind == "article"]
    print("\n### median perplexity, real articles vs generated articles\n")
    print("| reference LM | real articles | generated articles |\n|---|---:|---:|")
    for name, lm in (("Kneser-Ney on the generated seed (before; still the generated crawl's)", lm_old),
                     ("wordfreq unigram, per language (now, real crawls)", lm_new)):
        r_ppl = lm.perplexities([d.text for d in art], [d.lang for d in art])
        g_ppl = lm.perplexities(generated, gen_langs)
        print(f"| {name} | {np.median(r_ppl):,.0f} | {np.median(g_ppl):,.0f} |")


if __name__ == "__main__":
    main()

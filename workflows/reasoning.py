"""Reasoning data stages: the post-training problem sets (`reasoning_data`) and the reasoning
text that pretraining mixes in (`reasoning_corpus`, train-split problems only)."""
from __future__ import annotations


from deeprecipe.stages.generators import non_reasoning as nr
from deeprecipe.stages.generators import reasoning_corpus as rc
from deeprecipe.stages.generators import reasoning_data as rd

from .base import StageTask, part_name
from .curation import Decontaminate


class ReasoningData(StageTask):
    """Generated verifiable problems (train / rl / held-out by id hash: `problems-{split}.parquet`),
    non-reasoning rows (factual QA from curated corpus sentences, greetings) and safety
    preference pairs, as Parquet."""
    code_version = "2"  # 2: the rl split
    source_objects = (rd, nr)
    config_cls = rd.ReasoningDataConfig

    def upstream(self):
        return {"docs": self.clone(Decontaminate)}

    def key_extras(self):
        """The user's files by content, so editing one re-keys this stage and its downstream."""
        import hashlib
        files = [*self.stage_params["problem_files"], *self.stage_params["sft_files"]]
        return {"file_sha256": {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}}

    def corpus_sentences(self, ctx, n: int, max_words: int) -> list[str]:
        """Up to n sentences of 6..max_words words from the curated documents, in order."""
        docs = ctx.input("docs")
        texts = (text for part in docs.parts()
                 for text in docs.read_table(part, columns=["text"]).column("text").to_pylist())
        return nr.qa_sentences(texts, n, max_words)

    def build(self, ctx):
        p = self.stage_params
        problems = rd.generate_problems(p["n_per_task_level"], seed=p["seed"], tasks=p["tasks"],
                                        levels=p["levels"], held_out_frac=p["held_out_frac"])
        skipped: list[str] = []
        for path in p["problem_files"]:
            rows, bad = rd.load_gsm8k_jsonl(path, held_out_frac=p["held_out_frac"])
            problems, skipped = problems + rows, skipped + bad
        problems = rd.with_rl_split(problems, p["held_out_frac"], p["rl_frac"])
        for split in rd.SPLITS:
            ctx.write_table(rd.rows_to_table(r for r in problems if r["split"] == split),
                            f"problems-{split}.parquet")
        sentences = self.corpus_sentences(ctx, p["n_factual_qa"], p["max_sentence_words"])
        non_reasoning = (nr.factual_qa_from_sentences(sentences, seed=p["seed"],
                                                      held_out_frac=p["held_out_frac"])
                         + nr.greeting_rows())
        for path in p["sft_files"]:
            rows, bad = rd.load_sft_jsonl(path)
            non_reasoning, skipped = non_reasoning + rows, skipped + bad
        ctx.write_table(rd.rows_to_table(non_reasoning), "non_reasoning.parquet")
        pairs = nr.safety_preference_pairs(held_out_frac=p["held_out_frac"])
        ctx.write_table(nr.preference_pairs_to_table(pairs), "preferences.parquet")
        count = lambda rows, s: sum(r["split"] == s for r in rows)  # noqa: E731
        return {"rows": len(problems), "train_problems": count(problems, rd.TRAIN),
                "rl_problems": count(problems, rd.RL),
                "held_out_problems": count(problems, rd.HELD_OUT),
                "non_reasoning": len(non_reasoning), "preference_pairs": len(pairs),
                "preference_pairs_held_out": count(pairs, rd.HELD_OUT),
                "user_records_skipped": len(skipped), "user_skip_examples": skipped[:20]}


class ReasoningCorpus(StageTask):
    """Worked train-split problems as pretraining documents
    (`stages.generators.reasoning_corpus`): those of reasoning_data plus `extra_per_task_level`
    more generated ones per (task, level), held-out and RL problems excluded; one Parquet part
    (id, task, level, style, text)."""
    code_version = "3"  # 2: tagged documents as Q/A threads; 3: rl-split problems excluded
    source_objects = (rc, rd)
    config_cls = rc.ReasoningCorpusConfig

    def upstream(self):
        return {"data": self.clone(ReasoningData)}

    def key_extras(self):
        """reasoning_data's params that build() reads from its manifest (not its files), so
        early cutoff on reasoning_data's content cannot hide a change of them."""
        dp = self.clone(ReasoningData).stage_params
        return {"data_params": {k: dp[k] for k in ("tasks", "levels", "held_out_frac", "rl_frac")}}

    def build(self, ctx):
        p, data = self.stage_params, ctx.input("data")
        dp = data.manifest["params"]
        train = data.read_table(f"problems-{rd.TRAIN}.parquet").to_pylist()
        unseen = [r for split in (rd.HELD_OUT, rd.RL) for r in
                  data.read_table(f"problems-{split}.parquet", columns=["id", "prompt"]).to_pylist()]
        tasks = [t for t in dp["tasks"] if t in rd.GENERATORS]
        extra, draw_stats = rc.extra_train_problems(
            p["extra_per_task_level"], p["seed"], tasks, dp["levels"], dp["held_out_frac"],
            exclude_ids={r["id"] for r in unseen + train}, rl_frac=dp["rl_frac"])
        table, stats = rc.corpus_documents(train + extra, [r["prompt"] for r in unseen],
                                           p["tagged_frac"], p["seed"])
        if table.num_rows == 0:
            raise ValueError("reasoning_corpus: no documents (no train problem has reasoning lines)")
        ctx.write_table(table, part_name(0))
        return {"rows": table.num_rows, "chars": sum(len(t) for t in table.column("text").to_pylist()),
                "from_reasoning_data": len(train), "extra_generated": len(extra),
                **dict(draw_stats), **stats}

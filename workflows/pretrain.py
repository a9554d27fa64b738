"""Tokenizer and pretraining stages: tokenizer_train → tokenize_pack → pretrain_moe."""
from __future__ import annotations

from tokenizers import Tokenizer

from deeprecipe.stages import tokenize_pack, tokenizer_train
from deeprecipe.stages.generators import reasoning_corpus

from .base import StageTask, StageWork, part_name, phase_markers, sum_phase, work_of
from .curation import Decontaminate as CuratedDocs
from .reasoning import ReasoningCorpus


def read_tokenizer(artifact) -> Tokenizer:
    return Tokenizer.from_str(artifact.read_bytes(tokenizer_train.TOKENIZER_FILE).decode("utf-8"))


class TokenizerTrain(StageTask):
    """Byte-level BPE trained on (a sample of) the curated corpus; tokenizer.json + HF configs."""
    code_version = "1"
    source_objects = (tokenizer_train,)
    config_cls = tokenizer_train.TokenizerTrainConfig

    def upstream(self):
        return {"docs": self.clone(CuratedDocs)}

    def build(self, ctx):
        docs, p = ctx.input("docs"), self.stage_params

        def texts():
            n = 0
            for part in docs.parts():
                for text in docs.read_table(part, columns=["text"])["text"].to_pylist():
                    if n >= p["max_docs"]:
                        return
                    n += 1
                    yield text
        tok = tokenizer_train.train_tokenizer(texts(), p["vocab_size"], p["min_frequency"])
        written = tokenizer_train.save_tokenizer(tok, ctx.staging_uri())
        for path in written:
            ctx.output_path(path.rsplit("/", 1)[-1])
        return {"vocab_size": tok.get_vocab_size(), "trained_on_docs": min(docs.manifest["outputs"]["rows"] or 0, p["max_docs"])}


class TokenizePack(StageTask):
    """Curated documents → packed uint32 token rows (seq_len + 1), train/validation, with a
    temperature mixture over sources and FIM; count (per shard) → pack (per shard).

    `reasoning_share` > 0 mixes in reasoning_corpus (worked train-split problems) as one more
    unit and source (`stages.generators.reasoning_corpus.SOURCE`) pinned at that share of the
    training tokens; the web sources split the rest by temperature."""
    code_version = "2"  # 2: reasoning_corpus unit (special ids, no FIM)
    source_objects = (tokenize_pack,)
    config_cls = tokenize_pack.TokenizePackConfig

    def upstream(self):
        reasoning = {"reasoning": self.clone(ReasoningCorpus)} if self.mixes_reasoning() else {}
        return {"docs": self.clone(CuratedDocs), "tokenizer": self.clone(TokenizerTrain), **reasoning}

    def mixes_reasoning(self) -> bool:
        return bool(self.stage_params.get("reasoning_share"))

    def num_web_shards(self) -> int:
        return self.clone(CuratedDocs).num_shards()

    def num_shards(self) -> int:
        return self.num_web_shards() + int(self.mixes_reasoning())

    def unit_table(self, ctx, unit: int):
        """(table with text and source columns, is_reasoning) of work unit `unit`: a curated
        shard, or (the last unit) the reasoning corpus. Reasoning documents are packed with
        their tags as special ids and without FIM: a worked solution split into prefix /
        suffix / middle teaches `</answer>` followed by `<|fim_middle|>` (the first small run's
        R1-Zero samples kept writing past `</answer>` that way)."""
        column = self.stage_params["source_column"]
        if unit < self.num_web_shards():
            return ctx.input("docs").read_table(part_name(unit), columns=["text", column]), False
        texts = ctx.input("reasoning").read_table(part_name(0), columns=["text"]).column("text")
        return reasoning_corpus.mixture_table(texts, column), True

    def work(self):
        return [self.clone(TokenizePackShard, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        markers = sum_phase(ctx, "pack")
        index = {}
        for split in ("train", "validation"):
            entries = [e for m in phase_markers(ctx, "pack") for e in m["stats"]["index"][split]]
            index[split] = tokenize_pack.build_index(entries, seq_len=self.stage_params["seq_len"],
                                                     fmt="npy", split=split)
            with ctx.fs.open(ctx.output_path(f"index-{split}.json"), "w") as f:
                tokenize_pack.write_index(index[split], f)
        return {"rows": index["train"]["sequences"], "validation_sequences": index["validation"]["sequences"],
                "train_tokens": index["train"]["tokens"], "validation_tokens": index["validation"]["tokens"],
                "tokens_per_source": index["train"]["tokens_per_source"],
                "sampling_rates": self.sampling_rates(ctx), **{k: v for k, v in markers.items() if k != "index"}}

    def sampling_rates(self, ctx) -> dict:
        totals: dict[str, int] = {}
        for m in phase_markers(ctx, "count"):
            for source, n in m["stats"]["tokens_per_source"].items():
                totals[source] = totals.get(source, 0) + n
        fixed = ({reasoning_corpus.SOURCE: self.stage_params["reasoning_share"]}
                 if self.mixes_reasoning() else None)
        return tokenize_pack.sampling_rates(totals, self.stage_params["temperature"], fixed_shares=fixed)


@work_of(TokenizePack)
class TokenizeCount(StageWork):
    """Training-split tokens per source of one shard (for the global mixture rates)."""
    phase = "count"

    def do(self, ctx):
        p = self.params
        tok = read_tokenizer(ctx.input("tokenizer"))
        table, is_reasoning = self.stage_task.unit_table(ctx, self.unit)
        counts = tokenize_pack.count_source_tokens(tok, table, val_fraction=p["val_fraction"], seed=p["seed"],
                                                   source_column=p["source_column"],
                                                   parse_special=is_reasoning)
        return {"tokens_per_source": counts}


@work_of(TokenizePack)
class TokenizePackShard(StageWork):
    phase = "pack"

    def requires(self):
        s = self.stage_task
        return {**s.upstream(), "count": [self.clone(TokenizeCount, unit=i) for i in range(s.num_shards())]}

    def do(self, ctx):
        p, s = self.params, self.stage_task
        tok = read_tokenizer(ctx.input("tokenizer"))
        table, is_reasoning = s.unit_table(ctx, self.unit)
        rates = s.sampling_rates(ctx)
        index, stats = {}, tokenize_pack.PackStats()
        for split in ("train", "validation"):
            packed = tokenize_pack.pack_table(
                tok, table, seq_len=p["seq_len"], split=split, val_fraction=p["val_fraction"], seed=p["seed"],
                source_rates=rates if split == "train" else None,
                fim_rate=0.0 if is_reasoning else p["fim_rate"],
                source_column=p["source_column"], parse_special=is_reasoning)
            name = f"{split}-{self.unit:05d}.npy"
            with ctx.fs.open(ctx.output_path(name), "wb") as f:
                tokenize_pack.write_npy_shard(packed.tokens_NL, f)
            index[split] = [tokenize_pack.shard_index_entry(name, packed)]
            if split == "train":
                stats = packed.stats
        return {"index": index, **{k: v for k, v in stats.to_dict().items()
                                   if not isinstance(v, dict)}}

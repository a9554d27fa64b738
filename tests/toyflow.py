"""A small DAG on the real framework, for tests that need control over timing and failure.

numbers (shards) → squares → total (which reads numbers too). ``TOYFLOW_HANG_IN=<stage>`` makes that stage write a
partial file, touch ``$TOYFLOW_READY`` and sleep (to be killed); ``TOYFLOW_FAIL_IN`` raises.
"""
from __future__ import annotations

import json
import os
import time

import luigi
import pyarrow as pa

from deeprecipe.pipeline.task import PipelineTask, StageWork, VersionedTask, work_of


def maybe_hang_or_fail(stage: str, ctx) -> None:
    if os.environ.get("TOYFLOW_FAIL_IN") == stage:
        raise RuntimeError(f"toyflow: planned failure in {stage}")
    if os.environ.get("TOYFLOW_HANG_IN") == stage:
        with ctx.fs.open(ctx.output_path("part-99999.parquet"), "wb") as f:
            f.write(b"PAR1 half-written")
        open(os.environ["TOYFLOW_READY"], "w").close()
        time.sleep(600)


class Numbers(VersionedTask):
    count = luigi.IntParameter(default=40)
    shards = luigi.IntParameter(default=4)
    sleep_s = luigi.FloatParameter(default=0.0, significant=False)

    def num_shards(self):
        return self.shards

    def work(self):
        return [self.clone(NumbersShard, unit=i) for i in range(self.shards)]

    def build(self, ctx):
        return {"rows": self.count}


@work_of(Numbers)
class NumbersShard(StageWork):
    def do(self, ctx):
        time.sleep(self.stage_task.sleep_s)
        maybe_hang_or_fail("numbers", ctx)
        n, k = self.params["count"], self.params["shards"]
        values = [i for i in range(n) if i % k == self.unit]
        ctx.write_table(pa.table({"x": values}), f"part-{self.unit:05d}.parquet")
        return {"rows": len(values)}


class Squares(VersionedTask):
    offset = luigi.IntParameter(default=0)
    labels = luigi.DictParameter(default={}, description="free-form, recorded in the manifest")
    batch = luigi.IntParameter(default=8, description="values squared per batch: speed only, "
                               "the output is the same for every value")

    def upstream(self):
        return {"numbers": self.clone(Numbers)}

    def build(self, ctx):
        maybe_hang_or_fail("squares", ctx)
        numbers = ctx.input("numbers")
        xs = [x for p in numbers.parts() for x in numbers.read_table(p)["x"].to_pylist()]
        ys = [x * x + self.offset for i in range(0, len(xs), self.batch) for x in xs[i:i + self.batch]]
        ctx.write_table(pa.table({"y": ys}), "part-00000.parquet")
        return {"rows": len(xs)}


class Total(VersionedTask):
    """Reads squares and, directly, numbers too: the DAG is a diamond, not a chain."""

    def upstream(self):
        return {"squares": self.clone(Squares), "numbers": self.clone(Numbers)}

    def build(self, ctx):
        maybe_hang_or_fail("total", ctx)
        sq, numbers = ctx.input("squares"), ctx.input("numbers")
        total = sum(sq.read_table("part-00000.parquet")["y"].to_pylist())
        count = sum(numbers.read_table(p).num_rows for p in numbers.parts())
        with ctx.fs.open(ctx.output_path("total.json"), "wb") as f:
            f.write(json.dumps({"total": total, "count": count}).encode())
        return {"total": total, "count": count}


class RunToy(PipelineTask, luigi.WrapperTask):
    def requires(self):
        return self.clone(Total)


ROOTS = {"RunToy": RunToy}

"""The workflow-side base: stages take their parameter defaults from the chosen profile;
per-shard stages map each upstream shard to one output shard."""
from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from deeprecipe.pipeline.task import StageContext, StageWork, VersionedTask, read_markers, sum_stats, work_of

from deeprecipe.profiles import stage_config


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def phase_markers(ctx: StageContext, phase: str) -> list[dict]:
    """Committed markers of one phase's work units of this attempt."""
    return read_markers(ctx.store, ctx.stage, ctx.version, phase)


def sum_phase(ctx: StageContext, phase: str) -> dict:
    """Stats of one phase's work units, added up."""
    return sum_stats(phase_markers(ctx, phase))


LOCAL_CACHE = Path(os.environ.get("DEEPRECIPE_CACHE", Path.home() / ".cache" / "deeprecipe"))


def local_dir(ctx, *parts: str) -> Path:
    """A local folder for this attempt: inside the version folder on a local store, else in
    the local cache (remote stores cannot be trained into directly)."""
    if ctx.store.is_local:
        path = Path(ctx.scratch_path(*parts))
    else:
        path = LOCAL_CACHE / ctx.stage / ctx.version / "_work" / Path(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_copy(ctx, artifact, name: str, folder: Path) -> Path:
    """A local path of an upstream file (the file itself on a local store)."""
    if ctx.store.is_local:
        path = Path(artifact.path(name))
        artifact.verify(name)
        return path
    dest = folder / name
    if not dest.exists():
        ctx.fs.get_file(artifact.path(name), str(dest))
    artifact.verify(name, str(dest))
    return dest


class StageTask(VersionedTask):
    def profile_config(self):
        return stage_config(self.profile, self.stage)


class ShardMapStage(StageTask):
    """A stage that turns upstream shard i (``docs``) into its own shard i, one Luigi task per
    shard. Subclasses set ``input_stage``, may add ``side_inputs()`` (trained models, eval
    sets) and implement ``map_shard(table, ctx, shard) -> (table, stats)``; extra files a
    shard writes go through ``ctx.output_path``. Stats with ``docs_in``/``docs_out`` add up
    into the manifest."""
    input_stage: ClassVar[type[VersionedTask]]

    @classmethod
    def shard_cls(cls) -> type[StageWork]:
        """This stage's own shard task class ``<Stage>Shard``, made once (after the stage
        class is complete, which Luigi's parameter inheritance needs)."""
        if "_shard_cls" not in cls.__dict__:
            shard = type(f"{cls.__name__}Shard", (MapShard,), {"__module__": cls.__module__})
            cls._shard_cls = work_of(cls)(shard)
        return cls._shard_cls

    def side_inputs(self) -> dict[str, VersionedTask]:
        return {}

    def upstream(self):
        return {"docs": self.clone(self.input_stage), **self.side_inputs()}

    def num_shards(self) -> int:
        return self.clone(self.input_stage).num_shards()

    def work(self):
        return [self.clone(self.shard_cls(), unit=i) for i in range(self.num_shards())]

    def map_shard(self, table: pa.Table, ctx: StageContext, shard: int) -> tuple[pa.Table, dict]:
        raise NotImplementedError

    def build(self, ctx):
        stats = sum_phase(ctx, "shard")
        return {"rows": stats.get("docs_out"), **stats}


class MapShard(StageWork):
    """One shard of a ShardMapStage."""

    def do(self, ctx):
        stage = self.stage_task
        table = ctx.input("docs").read_table(part_name(self.unit))
        out, stats = stage.map_shard(table, ctx, self.unit)
        ctx.write_table(out, part_name(self.unit))
        return {"docs_in": table.num_rows, "docs_out": out.num_rows, **stats}

"""Luigi tasks whose output is a versioned, manifest-committed artifact.

``VersionedTask`` is one stage: its version is a Merkle key over its code version, resolved
parameters and its upstreams' content (the digests of their committed files: early cutoff),
final once every upstream is committed and provisional before; it is complete when that
version's manifest exists. ``StageWork`` is one unit of a stage's work (a shard, a bucket):
it writes into the stage's version folder and commits a marker, so ``--workers N`` and several
hosts sharing ``luigid`` split a stage; the stage task then commits the manifest over them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
import uuid
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, Iterable

import luigi
import luigi.util

from . import config as cfg
from . import manifest as mf
from .artifact import Artifact
from .options import config_option
from .luigi_config import install_defaults
from .progress import Progress
from .store import (AlreadyCommitted, ArtifactStore, Lease,
                    WORK_DIR, redact, safe_name)
from .versioning import canonical_json, version_key

logger = logging.getLogger("luigi-interface")

# Exit codes, retries, keep_alive for every module that defines deeprecipe tasks, from any
# working directory (a user's luigi.cfg still overrides them).
install_defaults()

# One id per `luigi` invocation; forked workers inherit it. Hosts that share one central
# scheduler and use --rerun set DEEPRECIPE_RUN_ID to the same value so they agree on the salt.
RUN_ID = os.environ.get("DEEPRECIPE_RUN_ID") or uuid.uuid4().hex[:12]
GLOBAL_PARAMS = ("profile", "store", "source", "rerun", "base_model")


_STORES: dict[tuple, ArtifactStore] = {}
_IDENTITY: dict[tuple[str, str, str], str] = {}  # committed manifests never change


def content_digest(manifest: dict) -> str | None:
    """sha256 over an artifact's output files (name and sha256 each, in name order); None for
    an artifact without files (its manifest is all there is)."""
    files = sorted((f["name"], f["sha256"]) for f in manifest["outputs"]["files"])
    return hashlib.sha256(canonical_json(files).encode()).hexdigest() if files else None


def input_identity(store: ArtifactStore, stage: str, version: str) -> str | None:
    """How a committed upstream enters a downstream key: ``content:<digest of its files>``
    (``version:<version>`` if it has no files); None while it is not committed."""
    k = (store.url, stage, version)
    if k not in _IDENTITY:
        if not store.is_committed(stage, version):
            return None
        digest = content_digest(store.read_manifest(stage, version))
        _IDENTITY[k] = f"content:{digest}" if digest else f"version:{version}"
    return _IDENTITY[k]


def shared_store(url: str | None) -> ArtifactStore:
    """One ArtifactStore per URL and process (tasks are many; clients are costly to open)."""
    key = (url, os.getpid())
    if key not in _STORES:
        _STORES[key] = ArtifactStore(url)
    return _STORES[key]


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ParameterError(cfg.ConfigError):
    """An option no stage can use; the message names it."""
    permanent = True


class PermanentFailure(RuntimeError):
    """A task's earlier permanent error in this run, raised again instead of redoing work."""
    permanent = True


# one per `luigi` invocation, forked workers included (unlike RUN_ID, never shared by hosts
# or by later runs through DEEPRECIPE_RUN_ID: a fixed input must be tried again next time)
_INVOCATION = uuid.uuid4().hex[:12]


def _permanent_path(task_id: str) -> str:
    import tempfile
    return os.path.join(tempfile.gettempdir(), f"deeprecipe-permanent-{_INVOCATION}",
                        hashlib.sha256(task_id.encode()).hexdigest()[:32])


class PipelineTask(luigi.Task):
    """The user-facing options every deeprecipe task carries, so a root task passes them
    to all of its upstream tasks through ``clone``."""
    profile = luigi.Parameter(default="tiny", description="profile: tiny | small | cluster. Every "
                              "stage's parameters, their values and help: `deeprecipe params ROOT` "
                              "(set one with --Task-param value)")
    store = luigi.Parameter(default="", description="artifact store URL (default: "
                            "$DEEPRECIPE_STORE, luigi.cfg [deeprecipe] store, the checkout's "
                            "artifacts/)")
    source = luigi.Parameter(default="", description="crawl source: path, glob or s3:// URI "
                             "of WARC/WET/JSONL/Parquet files (default: the generated crawl)")
    rerun = luigi.Parameter(default="", description="comma-separated stages to run again "
                            "as a fresh attempt (their downstream re-keys too)")
    base_model = luigi.Parameter(default="", description="a local transformers folder to "
                                 "post-train instead of pretrain_moe (stage base_model, "
                                 "versioned by the sha256 of its files)")

    @property
    def artifact_store(self) -> ArtifactStore:
        return shared_store(self.store or None)

    def on_success(self):
        if Artifact.hashed["bytes"]:  # the cost of checking upstream bytes, per task
            import logging
            logging.getLogger("luigi-interface").info(
                f"{self.task_id}: verified {Artifact.hashed['bytes']} upstream bytes (sha256) in "
                f"{Artifact.hashed['seconds']:.4f} s")
            Artifact.hashed.update(bytes=0, seconds=0.0)
        return super().on_success()

    def on_failure(self, exception):
        """What the scheduler and the summary show: a permanent error's message alone (bad
        input, corrupt artifact: a retry fails the same way), else Luigi's traceback; URLs'
        passwords redacted either way. A permanent error is remembered for this run, so
        Luigi's retries of the task end at once with the same message, doing no work again."""
        if getattr(exception, "permanent", False):
            message = f"{type(exception).__name__}: {redact(str(exception))}"
            try:
                path = _permanent_path(self.task_id)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(message)
            except OSError:
                pass
            return message
        return redact(super().on_failure(exception))

    def raise_if_failed_permanently(self) -> None:
        try:
            with open(_permanent_path(self.task_id)) as f:
                message = f.read()
        except OSError:
            return
        raise PermanentFailure(f"{message} (failed earlier in this run; not retried)")


# what a retry cannot fix: logged as one line, without a traceback
PERMANENT_ERRORS = {"StoreError", "IntegrityError", "ParameterError", "SourceError",
                    "SourceFileError", "EmptyCorpusError", "PermanentFailure", "ProfileError",
                    "ConfigError"}


def _redact_log_records() -> None:
    """Every log record's text passes through ``redact`` (a source URL with a password in it
    reaches Luigi's task ids and summaries)."""
    import logging
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_deeprecipe_redacts", False):
        return

    def factory(*args, **kwargs):
        import sys
        record = previous(*args, **kwargs)
        exc = record.exc_info[1] if record.exc_info and record.exc_info is not True else sys.exc_info()[1]
        if exc is not None and getattr(exc, "permanent", False):
            # a permanent error (bad input, corrupt artifact, bad option) is its message, not a
            # traceback (Luigi logs some with exc_info, some with the traceback in the text)
            msg = record.getMessage().split("Traceback (most recent call last)")[0].rstrip()
            record.msg = f"{msg} {type(exc).__name__}: {exc}"
            record.args, record.exc_info, record.exc_text = None, None, None
        elif isinstance(record.msg, str) and "Traceback (most recent call last)" in record.msg:
            try:
                text = record.getMessage()
            except Exception:
                text = ""
            last = text.rstrip().rsplit("\n", 1)[-1]
            name = last.split(":", 1)[0].rsplit(".", 1)[-1]
            if name in PERMANENT_ERRORS:  # a traceback Luigi formatted into the text itself
                record.msg = text.split("Traceback (most recent call last)")[0].rstrip() + " " + last
                record.args = None
        try:
            msg = record.getMessage()
        except Exception:
            return record
        if "@" in msg and "://" in msg:
            record.msg, record.args = redact(msg), None
        return record
    factory._deeprecipe_redacts = True
    logging.setLogRecordFactory(factory)


_redact_log_records()


class ManifestTarget(luigi.Target):
    """Exists when the version's manifest is committed."""

    def __init__(self, store: ArtifactStore, stage: str, version: str):
        self.store, self.stage, self.version = store, stage, version

    def exists(self) -> bool:
        return self.store.is_committed(self.stage, self.version)

    @property
    def path(self) -> str:
        return self.store.uri(self.stage, self.version)

    def manifest(self) -> dict:
        return self.store.read_manifest(self.stage, self.version)


class StageContext:
    """What a stage's code gets: where to write, what it wrote, upstream artifacts, progress."""

    def __init__(self, task: "PipelineTask", stage: str, version: str):
        self.task, self.stage, self.version = task, stage, version
        self.store: ArtifactStore = task.artifact_store
        self.fs = self.store.fs
        self.outputs: list[str] = []
        # every file of the artifact is written under this attempt-private folder and only
        # published (linked / copied to its name) by the commit, so no run ever writes into
        # a committed version or into another attempt's files
        self.attempt = f"{RUN_ID}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.staging_rel = f"{WORK_DIR}/att-{self.attempt}"
        self.store.makedirs(self.store.version_dir(stage, version))

    def staging_uri(self) -> str:
        """The attempt-private folder, for writers that take a folder (then name each file
        they wrote with ``output_path``)."""
        path = self.store.path(self.stage, self.version, self.staging_rel)
        self.store.makedirs(path)
        return self.store.uri(self.stage, self.version, self.staging_rel)

    def output_path(self, name: str) -> str:
        """Path to write a file that becomes part of the artifact (listed and digested): an
        attempt-private name, published under ``name`` only when the version commits."""
        safe_name(name, f"output name of {self.stage}")
        if name not in self.outputs:
            self.outputs.append(name)
        path = self.store.path(self.stage, self.version, self.staging_rel, name)
        self.store.makedirs(os.path.dirname(path))
        return path

    @property
    def staged(self) -> dict[str, str]:
        """Each output's staged path, relative to the version folder."""
        return {name: f"{self.staging_rel}/{name}" for name in self.outputs}

    def scratch_path(self, *parts: str) -> str:
        """Path of a scratch file of this attempt (removed after the commit)."""
        path = self.store.path(self.stage, self.version, WORK_DIR, *parts)
        self.store.makedirs(os.path.dirname(path))
        return path

    def write_table(self, table, name: str) -> str:
        import pyarrow.parquet as pq
        path = self.output_path(name)
        with self.fs.open(path, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        return path

    def input(self, name: str) -> Artifact:
        target = self.task.input()[name]
        return Artifact(self.store, target.manifest(), target.stage, target.version)

    def progress(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "") -> Progress:
        return Progress(self.task, iterable, total=total, desc=desc or self.stage)


class VersionedTask(PipelineTask):
    """One stage. Subclasses set ``code_version`` and ``config_cls`` (a frozen dataclass of the
    stage's parameters: each field becomes a Luigi option ``--Task-field`` whose default None
    means the profile's value), and implement ``upstream()``, optionally ``work()`` (the
    stage's shard tasks) and ``build(ctx) -> metrics``. A task without ``config_cls``
    declares Luigi parameters itself (their values form the key)."""
    stage: ClassVar[str] = ""
    code_version: ClassVar[str] = "1"
    config_cls: ClassVar[type | None] = None
    source_objects: ClassVar[tuple] = ()  # stage modules whose source the manifest hashes

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("stage"):
            cls.stage = snake_case(cls.__name__)
        config_cls = cls.__dict__.get("config_cls")
        if config_cls is not None:
            for f in dataclasses.fields(config_cls):
                if not isinstance(getattr(cls, f.name, None), luigi.Parameter):
                    option = config_option(config_cls, f.name)
                    option.__set_name__(cls, f.name)  # Luigi's descriptor learns its name
                    setattr(cls, f.name, option)
            if "display_empty" not in cls.__dict__:
                cls.display_empty = cfg.display_empty(config_cls)

    # -- what a stage declares ---------------------------------------------------------
    def upstream(self) -> dict[str, "VersionedTask"]:
        return {}

    def work(self) -> list[luigi.Task]:
        return []

    def build(self, ctx: StageContext) -> dict:
        return {}

    def profile_config(self):
        """This stage's config in the chosen profile (None: the profile has none)."""
        return None

    def profile_defaults(self) -> dict:
        """This stage's parameter values in the chosen profile, as plain values."""
        base = self.profile_config()
        return {} if base is None else cfg.plain(base)

    def key_extras(self) -> dict:
        """Facts besides parameters that identify the inputs (e.g. a source listing digest)."""
        return {}

    def num_shards(self) -> int:
        return 1

    # -- version -----------------------------------------------------------------------
    def tunable_param_names(self) -> list[str]:
        if self.config_cls is not None:
            return [f.name for f in dataclasses.fields(self.config_cls)]
        return [name for name, p in self.get_params()
                if name not in GLOBAL_PARAMS and p.significant]

    def command_line_values(self) -> dict:
        """The config fields given on the command line or in luigi.cfg (not None)."""
        return {name: getattr(self, name) for name in self.tunable_param_names()
                if getattr(self, name) is not None}

    @cached_property
    def config(self):
        """The stage's typed config: the profile's, with the command line's fields merged in
        field by field (a dict option changes only the nested fields it names). A field that
        nothing sets is a configuration error, raised here with the option names."""
        if self.config_cls is None:
            raise TypeError(f"{type(self).__name__} has no config_cls")
        given = self.command_line_values()
        base = self.profile_config()
        if base is not None and not isinstance(base, self.config_cls):
            raise ParameterError(f"{self.stage}: profile {self.profile!r} holds a "
                                 f"{type(base).__name__}, the stage takes {self.config_cls.__name__}")
        try:
            if base is not None:
                return cfg.merge(base, given, self.stage)
            unset = [f.name for f in dataclasses.fields(self.config_cls)
                     if f.name not in given and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING]
            if unset:
                raise self.unset_error(unset)
            return cfg.build(self.config_cls, given, self.stage)
        except ParameterError:
            raise
        except cfg.ConfigError as e:  # names the stage and field already
            raise ParameterError(str(e)) from None
        except ValueError as e:  # a config's own check (__post_init__)
            raise ParameterError(f"{self.stage}: {e}") from None

    def unset_error(self, unset: list[str]) -> ParameterError:
        return ParameterError(
            f"{self.stage}: parameters {unset} are unset: profile "
            f"{getattr(self, 'profile', None)!r} has no value for them; pass "
            f"--{type(self).__name__}-{unset[0].replace('_', '-')} (and the rest) or use a "
            "profile that sets them")

    @cached_property
    def stage_params(self) -> dict:
        """Each tunable parameter's resolved value as plain JSON values (what the key and the
        manifest hold): the typed config's fields, or for a task without ``config_cls`` its
        Luigi parameters."""
        if self.config_cls is not None:
            out = cfg.plain(self.config)
            self.check_params(out)
            return out
        out = {name: getattr(self, name) for name in self.tunable_param_names()}
        unset = [name for name, value in out.items() if value is None]
        if unset:
            raise self.unset_error(unset)
        self.check_params(out)
        return out

    POSITIVE_PARAMS: ClassVar[tuple] = ("num_buckets", "num_files", "num_perm", "files_per_shard",
                                        "pages_per_file", "shards")

    def check_params(self, params: dict) -> None:
        """Reject values no stage can use, naming the option (counts that must be ≥ 1)."""
        for name in self.POSITIVE_PARAMS:
            value = params.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ParameterError(f"{self.stage}: --{type(self).__name__}-{name.replace('_', '-')} "
                                 f"must be at least 1, got {value}")

    @cached_property
    def rerun_stages(self) -> set[str]:
        """Stages named in --rerun (``STAGE+`` also names STAGE)."""
        return {s.strip().rstrip("+") for s in self.rerun.split(",") if s.strip().rstrip("+")}

    @cached_property
    def forces_downstream(self) -> bool:
        """--rerun STAGE+ forces STAGE and everything downstream of it (no early cutoff)."""
        plus = {s.strip()[:-1] for s in self.rerun.split(",") if s.strip().endswith("+")}
        return self.stage in plus or any(u.forces_downstream for u in self.upstream().values())

    @property
    def forced(self) -> bool:
        """Salted by --rerun: named there, or downstream of a ``STAGE+``."""
        return self.stage in self.rerun_stages or any(
            u.forces_downstream for u in self.upstream().values())

    @property
    def key(self) -> dict:
        """The version key. An upstream enters it by its *content* (the digest of its
        committed output files) once it is committed, so an upstream that re-ran into
        byte-identical files leaves this version unchanged (early cutoff). While an upstream
        is not committed yet the key is provisional: its input is ``pending:<upstream
        version>`` and ``key["pending"]`` lists the uncommitted (stage, version) it waits on;
        no artifact is ever committed under a provisional key. A resolved key is final (it
        depends on committed manifests only) and cached; a provisional one is recomputed as
        soon as one of the versions it waits on is committed."""
        cached = self.__dict__.get("_key")
        if cached is not None and not any(self.artifact_store.is_committed(s, v)
                                          for s, v in cached["pending"]):
            return cached
        inputs, pending = {}, set()
        for name, t in sorted(self.upstream().items()):
            up = t.key
            ident = None if up["pending"] else input_identity(t.artifact_store, t.stage, up["version"])
            if ident is None:
                inputs[name] = f"pending:{up['version']}"
                pending |= set(up["pending"]) or {(t.stage, up["version"])}
            else:
                inputs[name] = ident
        params = {**self.stage_params, **self.key_extras()}
        salt = f"rerun-{RUN_ID}" if self.forced else None
        key = version_key(self.stage, self.code_version, params, inputs, salt)
        key["pending"] = sorted(pending)
        self.__dict__["_key"] = key
        return key

    @property
    def version(self) -> str:
        return self.key["version"]

    def cut_off(self) -> bool:
        """At run time (every upstream committed): True when this version is already
        committed, as when an upstream re-ran into byte-identical outputs; nothing to do."""
        key = self.key
        if key["pending"]:
            raise RuntimeError(f"{self.stage}: upstream {', '.join(f'{s}/{v}' for s, v in key['pending'])} "
                               "is not committed, so this stage's version is not known yet")
        return self.artifact_store.is_committed(self.stage, key["version"])

    @cached_property
    def code_source(self) -> tuple[str, list[str]]:
        return mf.source_digest([type(self), *self.source_objects])

    # -- luigi -------------------------------------------------------------------------
    def requires(self):
        return {**self.upstream(), "_work": self.work()}

    def output(self) -> ManifestTarget:
        return ManifestTarget(self.artifact_store, self.stage, self.version)

    def run(self):
        if self.cut_off():
            msg = (f"{self.stage} {self.version}: already committed (its inputs are byte-identical "
                   "to that version's: early cutoff); nothing to run")
            logger.info(msg)
            self.set_status_message(msg)
            self.set_progress_percentage(100)
            return
        self.raise_if_failed_permanently()
        lease = Lease(self.artifact_store, self.stage, self.version, "commit", RUN_ID, self.task_id)
        if not lease.acquire(done=self.output().exists, on_wait=self._waiting):
            return  # another run committed this version; theirs stands
        try:
            self._build_and_commit(lease)
        finally:
            lease.release()

    def _waiting(self, lease: Lease, waited: float) -> None:
        if waited % 30 < 0.25:  # at once, then every 30 s
            logger.info(
                f"{self.stage} {self.version}: waiting for {lease.name} lease held by "
                f"{lease.describe_holder()}")

    def _build_and_commit(self, lease: Lease):
        start, t0 = mf.utc_now(), time.time()
        store = self.artifact_store
        ctx = StageContext(self, self.stage, self.version)
        self.set_status_message(f"{self.stage} {self.version}: building")
        metrics = dict(self.build(ctx) or {})
        staged = dict(ctx.staged)
        markers = read_markers(store, self.stage, self.version)
        for marker in markers:
            for n in marker["outputs"]:
                staged.setdefault(n, marker.get("staged", {}).get(n, n))
        if markers:  # where the stage's time went: work units by phase, and the first start
            start = min([start, *(m["start"] for m in markers if "start" in m)])
            metrics["work_seconds"] = {}
            for m in markers:
                metrics["work_seconds"][m["phase"]] = round(
                    metrics["work_seconds"].get(m["phase"], 0.0) + m.get("seconds", 0.0), 3)
        files = []
        for name in sorted(staged):
            digest, size = store.file_digest(store.path(self.stage, self.version, staged[name]))
            files.append({"name": name, "bytes": size, "sha256": digest})
        manifest = self.make_manifest(start, time.time() - t0, files, metrics)
        manifest["run"]["wall_seconds"] = round(
            (datetime.fromisoformat(manifest["run"]["end"]) - datetime.fromisoformat(start)).total_seconds(), 3)
        if store.is_committed(self.stage, self.version):
            return
        lease.check()
        for name in sorted(staged):  # publish: staged files get their names, then the commit
            if staged[name] != name:
                store.publish(store.path(self.stage, self.version, staged[name]),
                              store.path(self.stage, self.version, name))
        try:
            store.commit_manifest(self.stage, self.version, manifest)
        except AlreadyCommitted:
            return  # another worker committed the same version; theirs stands
        store.discard_work(self.stage, self.version)
        self.set_progress_percentage(100)
        self.set_status_message(f"{self.stage} {self.version}: committed")

    def make_manifest(self, start: str, seconds: float, files: list[dict], metrics: dict) -> dict:
        store = self.artifact_store
        upstream = {}
        for name, t in sorted(self.upstream().items()):
            digest, _ = store.file_digest(store.manifest_path(t.stage, t.version))
            upstream[name] = {"stage": t.stage, "version": t.version, "manifest_sha256": digest}
        source_sha, source_files = self.code_source
        rows = metrics.pop("rows", None)
        return {
            "schema": mf.SCHEMA,
            "stage": self.stage,
            "version": self.version,
            "key": self.key["key"],
            "key_sha256": self.key["digest"],
            "params": self.stage_params,
            "profile": self.profile,
            "upstream": upstream,
            "code": {"code_version": self.code_version, "source_sha256": source_sha,
                     "source_files": source_files, **mf.git_state(),
                     "packages": mf.package_versions()},
            "run": {"id": RUN_ID, "task_id": self.task_id, "start": start, "end": mf.utc_now(),
                    "seconds": round(seconds, 3), **mf.run_environment()},
            "outputs": {"files": files, "rows": rows, "metrics": metrics},
        }


def marker_dir(store: ArtifactStore, stage: str, version: str) -> str:
    return store.path(stage, version, WORK_DIR, "markers")


def read_markers(store: ArtifactStore, stage: str, version: str, phase: str | None = None) -> list[dict]:
    """Committed work markers of an attempt, in name order (optionally of one phase)."""
    d = marker_dir(store, stage, version)
    if not store.fs.exists(d):
        return []
    names = sorted(p for p in store.fs.ls(d, detail=False) if p.endswith(".json"))
    out = [store.read_json(p) for p in names]
    return [m for m in out if phase is None or m["phase"] == phase]


class MarkerTarget(luigi.Target):
    """Exists when the work unit's marker is committed, or the whole version is (its
    commit removes the markers; a run that started earlier must see its units as done)."""
    def __init__(self, store: ArtifactStore, path: str, stage: str = "", version: str = ""):
        self.store, self.path, self.stage, self.version = store, path, stage, version

    def exists(self) -> bool:
        return self.store.fs.exists(self.path) or (
            bool(self.stage) and self.store.is_committed(self.stage, self.version))


class StageWork(PipelineTask):
    """One unit of a stage's work. Decorate subclasses with ``@work_of(StageClass)`` so they
    carry the stage's parameters; set ``phase`` and give a ``unit`` (shard or bucket index)."""
    stage_cls: ClassVar[type[VersionedTask]]
    phase: ClassVar[str] = "shard"
    unit = luigi.IntParameter(description="shard or bucket index")

    @cached_property
    def stage_task(self) -> VersionedTask:
        return self.clone(self.stage_cls)

    @property
    def params(self) -> dict:
        return self.stage_task.stage_params

    def requires(self):
        return self.stage_task.upstream()

    def do(self, ctx: StageContext) -> dict:
        """Write this unit's files through ``ctx``; return its stats."""
        raise NotImplementedError

    def marker_path(self) -> str:
        s = self.stage_task
        return f"{marker_dir(self.artifact_store, s.stage, s.version)}/{self.phase}-{self.unit:06d}.json"

    def output(self) -> MarkerTarget:
        s = self.stage_task
        return MarkerTarget(self.artifact_store, self.marker_path(), s.stage, s.version)

    def complete(self) -> bool:
        # a unit of a stage that is committed (e.g. cut off early) has nothing left to do
        return self.stage_task.output().exists() or super().complete()

    def run(self):
        self.raise_if_failed_permanently()
        s = self.stage_task
        if s.cut_off():
            return
        lease = Lease(self.artifact_store, s.stage, s.version, f"{self.phase}-{self.unit:06d}",
                      RUN_ID, self.task_id)
        if not lease.acquire(done=self.output().exists, on_wait=s._waiting):
            return  # another run did this unit (or committed the version)
        try:
            ctx = StageContext(self, s.stage, s.version)
            self.set_status_message(f"{s.stage} {s.version}: {self.phase} {self.unit}")
            start, t0 = mf.utc_now(), time.time()
            stats = self.do(ctx) or {}
            marker = {"phase": self.phase, "unit": self.unit, "outputs": ctx.outputs,
                      "staged": ctx.staged, "stats": stats, "start": start,
                      "seconds": round(time.time() - t0, 3)}
            data = json.dumps(marker, sort_keys=True).encode()
            lease.check()
            try:
                self.artifact_store.create_exclusive(self.marker_path(), data)
            except AlreadyCommitted:
                pass
        finally:
            lease.release()


def work_of(stage_cls: type[VersionedTask]):
    """Class decorator: the work task carries every parameter of ``stage_cls``."""
    def wrap(cls):
        cls = luigi.util.inherits(stage_cls)(cls)
        cls.stage_cls = stage_cls
        return cls
    return wrap


def sum_stats(markers: list[dict]) -> dict:
    """Add up numeric stats (nested dicts too) over work markers."""
    total: dict[str, Any] = {}

    def add(into: dict, d: dict):
        for k, v in d.items():
            if isinstance(v, dict):
                add(into.setdefault(k, {}), v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                into[k] = into.get(k, 0) + v
    for m in markers:
        add(total, m["stats"])
    return total


def short_hash(text: str, digits: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]

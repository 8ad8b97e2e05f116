"""Stage outputs and their ``_SUCCESS.json`` manifests.

A run is a store prefix; each stage writes below ``{run}/{stage}/``. Outputs go into a fresh
attempt folder ``{run}/{stage}/{attempt}/``; when every file is written the stage writes
``{run}/{stage}/_SUCCESS.json`` last, naming the attempt, every file (size, sha256), the
parameters and the code version. Readers go through the manifest only, so a rerun replaces a
stage atomically from their point of view: until the manifest flips they read the old attempt,
after it the new one. Older attempts are pruned after the flip (the one before is kept, for
readers that are still on it). Commits hold a lock (``_COMMIT.lock``, created exclusively on disk or
S3), so two writers of one stage cannot interleave; only attempts that were committed once (they hold
``_COMMITTED.json``) are pruned, so another writer's attempt in progress is never deleted.

    out = StageOutput(run_uri, "ingest")
    out.write_bytes("index.parquet", data)
    out.commit(params={"workers": 2})

    stage = StageInput.open(run_uri, "ingest")   # refuses a stage without (or not matching) its manifest
    data = stage.read_bytes("index.parquet")     # checked against the recorded sha256
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lumbar_core import settings, store
from lumbar_core.contracts import Read, current_guard
from lumbar_core.errors import ManifestError, UserError

MANIFEST = "_SUCCESS.json"
COMMITTED = "_COMMITTED.json"  # written into an attempt folder when it is committed; only such attempts are pruned
LOCK = "_COMMIT.lock"
LOCK_STALE_S = 600.0  # a commit lock older than this was left by a writer that died while committing
ABANDONED_S = 7 * 24 * 3600.0  # an attempt never committed and older than this is pruned
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One output file of a stage: path relative to the attempt folder, size in bytes, sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The typed content of a ``_SUCCESS.json``."""

    stage: str
    attempt: str
    files: dict[str, FileEntry]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)  # stage (or another run's stage prefix) -> attempt read
    code_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        out = asdict(self)
        out["files"] = [asdict(f) for f in sorted(self.files.values(), key=lambda f: f.path)]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str) -> Manifest:
        """Parse a manifest; ``where`` names it in errors."""
        required = ("stage", "attempt", "files")
        missing = [k for k in required if k not in data]
        if missing:
            raise ManifestError(f"{where}: manifest lacks {', '.join(missing)} (has {', '.join(sorted(data))})")
        files = {f["path"]: FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"]}
        return cls(
            stage=data["stage"],
            attempt=data["attempt"],
            files=files,
            params=data.get("params", {}),
            metrics=data.get("metrics", {}),
            upstream=dict(data.get("upstream", {})),
            code_version=data.get("code_version", ""),
            created=data.get("created", ""),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )


def stage_uri(run_uri: str, stage: str) -> str:
    """The prefix of one stage within a run."""
    return store.join(run_uri, stage)


def shard_stage(name: str, shard_index: int, shard_count: int) -> str:
    """The stage one shard writes: ``{name}`` when there is one shard, ``{name}-shard-{i}`` of several."""
    if not 0 <= shard_index < shard_count:
        raise UserError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    return name if shard_count == 1 else f"{name}-shard-{shard_index}"


@contextlib.contextmanager
def _commit_lock(prefix: str, attempt: str) -> Iterator[None]:
    """Hold ``{prefix}/_COMMIT.lock`` (created exclusively, on disk or S3) while one writer commits.

    Waits for another writer's commit; a lock older than :data:`LOCK_STALE_S` is taken over.
    """
    lock_uri = store.join(prefix, LOCK)
    body = json.dumps({"attempt": attempt, "since": time.time()}).encode()
    while not store.create_exclusive(lock_uri, body):
        try:
            since = float(store.read_json(lock_uri).get("since", 0))
        except store.ObjectNotFound:
            continue  # released meanwhile: try again
        if time.time() - since > LOCK_STALE_S:
            store.delete(lock_uri)
            continue
        time.sleep(0.05 + random.random() * 0.1)
    try:
        yield
    finally:
        store.delete(lock_uri)


def _attempt_time(name: str) -> float | None:
    """When an attempt folder was started, from its name (``attempt-YYYYmmddTHHMMSS-xxxx``)."""
    try:
        stamp = _dt.datetime.strptime(name.split("-")[1], "%Y%m%dT%H%M%S").replace(tzinfo=_dt.UTC)
    except (IndexError, ValueError):
        return None
    return stamp.timestamp()


def _prune(prefix: str, keep: set[str | None]) -> None:
    """Delete attempts other than ``keep`` that were committed once, or never committed and abandoned long ago.

    An attempt still being written (no ``_COMMITTED.json``, recent) belongs to another writer and stays.
    """
    objects = store.list_objects(prefix)
    attempts = {o.path.split("/", 1)[0] for o in objects if "/" in o.path and o.path.startswith("attempt-")}
    committed = {o.path.split("/", 1)[0] for o in objects if o.path.endswith("/" + COMMITTED) and o.path.count("/") == 1}
    now = time.time()
    for old in sorted(attempts - keep):
        started = _attempt_time(old)
        if old in committed or (started is not None and now - started > ABANDONED_S):
            store.delete_prefix(store.join(prefix, old))


def _new_attempt() -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"attempt-{now}-{uuid.uuid4().hex[:8]}"


class StageOutput:
    """Writes one stage's outputs into a new attempt folder, then commits the manifest.

    Thread-safe: files may be written from several threads. Files written by other processes
    (e.g. workers) into :meth:`uri` paths are recorded with :meth:`record`.
    """

    def __init__(self, run_uri: str, stage: str):
        """Start a new attempt of ``stage`` under ``run_uri``."""
        self.run_uri = run_uri
        self.stage = stage
        self.attempt = _new_attempt()
        self.root = store.join(stage_uri(run_uri, stage), self.attempt)
        self._files: dict[str, FileEntry] = {}
        self._lock = threading.Lock()
        self._committed = False

    def uri(self, relpath: str) -> str:
        """Where a file of this attempt lives."""
        return store.join(self.root, relpath)

    def _add(self, entry: FileEntry) -> None:
        guard = current_guard()
        if guard is not None:
            guard.check_write(entry.path)
        if self._committed:
            raise ManifestError(f"stage {self.stage}: cannot add {entry.path} after commit")
        with self._lock:
            self._files[entry.path] = entry

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Write one output file; returns its URI."""
        uri = self.uri(relpath)
        store.write_bytes(uri, data)
        self._add(FileEntry(relpath, len(data), store.sha256_bytes(data)))
        return uri

    def write_text(self, relpath: str, text: str) -> str:
        """Write a UTF-8 text output."""
        return self.write_bytes(relpath, text.encode("utf-8"))

    def write_json(self, relpath: str, obj: Any) -> str:
        """Write a JSON output (indented, key-sorted); a declared document type is checked first."""
        guard = current_guard()
        if guard is not None:
            guard.check_document(relpath, obj)
        return self.write_text(relpath, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def write_table(self, relpath: str, frame) -> str:
        """Write a pandas DataFrame as a parquet output."""
        guard = current_guard()
        if guard is not None:
            guard.check_write(relpath, frame)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(relpath, buffer.getvalue())

    def upload(self, local_path: str | os.PathLike, relpath: str) -> str:
        """Upload a local file as an output."""
        path = Path(local_path)
        uri = self.uri(relpath)
        store.upload(path, uri)
        self._add(FileEntry(relpath, path.stat().st_size, store.sha256_file(path)))
        return uri

    def upload_dir(self, local_dir: str | os.PathLike, relpath: str = "") -> None:
        """Upload every file below a local folder, keeping relative paths under ``relpath``."""
        root = Path(local_dir)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.upload(path, store.join(relpath, path.relative_to(root).as_posix()) if relpath else path.relative_to(root).as_posix())

    def record(self, entry: FileEntry) -> None:
        """Record a file that was written to :meth:`uri` by someone else (e.g. a worker process)."""
        self._add(entry)

    @property
    def files(self) -> dict[str, FileEntry]:
        """Files written so far."""
        with self._lock:
            return dict(self._files)

    def commit(self, *, params: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> Manifest:
        """Write ``_SUCCESS.json`` (last), then prune attempts older than the one it replaces."""
        guard = current_guard()
        manifest = Manifest(
            stage=self.stage,
            attempt=self.attempt,
            files=self.files,
            params=dict(params or {}),
            metrics=dict(metrics or {}),
            upstream=dict(sorted(guard.opened.items())) if guard is not None else {},
            code_version=settings.code_version(),
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )
        prefix = stage_uri(self.run_uri, self.stage)
        manifest_uri = store.join(prefix, MANIFEST)
        with _commit_lock(prefix, self.attempt):
            previous = None
            if store.exists(manifest_uri):
                try:
                    previous = store.read_json(manifest_uri).get("attempt")
                except (store.StoreError, AttributeError, ValueError):
                    previous = None
            store.write_json(store.join(self.root, COMMITTED), {"attempt": self.attempt, "committed": manifest.created})
            store.write_json(manifest_uri, manifest.to_dict())
            self._committed = True
            _prune(prefix, keep={self.attempt, previous})
        return manifest

    def publish(self, relpath: str) -> str:
        """After :meth:`commit`, copy one output to the stage's top level (``{run}/{stage}/{relpath}``).

        For people and tools that expect fixed paths (``{run}/score/submission.csv``); stages never
        read published copies, only the manifest's attempt.
        """
        if not self._committed:
            raise ManifestError(f"stage {self.stage}: publish {relpath} only after commit")
        target = store.join(stage_uri(self.run_uri, self.stage), relpath)
        store.copy(self.uri(relpath), target)
        return target


class StageInput:
    """A committed stage, read through its manifest."""

    def __init__(self, prefix: str, manifest: Manifest, declared: Read | None = None):
        """Use :meth:`open` or :meth:`open_prefix`."""
        self.prefix = prefix.rstrip("/")
        self.manifest = manifest
        self.root = store.join(self.prefix, manifest.attempt)
        self._declared = declared  # the running stage's declaration of this read (None outside a guard)

    @classmethod
    def open(cls, run_uri: str, stage: str, *, verify: bool = True) -> StageInput:
        """Open a committed stage.

        Args:
            run_uri: the run prefix.
            stage: the stage name (kebab-case, e.g. ``vertebra-train``).
            verify: check that every file of the manifest exists with its recorded size.

        Raises:
            ManifestError: no manifest (the stage never finished), or a file missing or of the
                wrong size; the message names the stage and the file.
        """
        return cls._open_at(stage_uri(run_uri, stage), stage, verify=verify)

    @classmethod
    def open_prefix(cls, prefix: str, *, stage: str, verify: bool = True) -> StageInput:
        """Open a committed ``stage`` by its own prefix, whatever the folder is called (a bundle copied elsewhere)."""
        return cls._open_at(prefix, stage, verify=verify)

    @classmethod
    def _open_at(cls, prefix: str, stage: str, *, verify: bool) -> StageInput:
        manifest_uri = store.join(prefix, MANIFEST)
        try:
            data = store.read_json(manifest_uri)
        except store.ObjectNotFound:
            raise ManifestError(
                f"stage {stage!r} has no {MANIFEST} under {prefix}: it has not run or did not finish; run it first"
            ) from None
        manifest = Manifest.from_dict(data, where=manifest_uri)
        if manifest.stage != stage:
            raise ManifestError(f"{manifest_uri} belongs to stage {manifest.stage!r}, not {stage!r}")
        guard = current_guard()
        reader = cls(prefix, manifest, guard.check_open(prefix, manifest.attempt) if guard is not None else None)
        if verify:
            present = {o.path: o.size for o in store.list_objects(reader.root)}
            for entry in manifest.files.values():
                if entry.path not in present:
                    raise ManifestError(f"stage {stage!r}: file {entry.path} listed in {MANIFEST} is missing from {reader.root}")
                if present[entry.path] != entry.size:
                    raise ManifestError(f"stage {stage!r}: file {entry.path} has {present[entry.path]} bytes, manifest says {entry.size}")
        return reader

    def _entry(self, relpath: str) -> FileEntry:
        guard = current_guard()
        if guard is not None and self._declared is not None:
            guard.check_file(self._declared, self.prefix, relpath)
        try:
            return self.manifest.files[relpath]
        except KeyError:
            listed = sorted(self.manifest.files)
            shown = ", ".join(listed[:20]) + (" ..." if len(listed) > 20 else "")
            raise ManifestError(f"stage {self.manifest.stage!r} has no output {relpath!r}; it has: {shown}") from None

    def uri(self, relpath: str) -> str:
        """The URI of one output (which must be in the manifest)."""
        self._entry(relpath)
        return store.join(self.root, relpath)

    def read_bytes(self, relpath: str) -> bytes:
        """Read one output and check it against the manifest's sha256."""
        entry = self._entry(relpath)
        data = store.read_bytes(store.join(self.root, relpath))
        if store.sha256_bytes(data) != entry.sha256:
            raise ManifestError(f"stage {self.manifest.stage!r}: file {relpath} does not match its sha256 in {MANIFEST}")
        return data

    def read_json(self, relpath: str) -> Any:
        """Read one JSON output."""
        return json.loads(self.read_bytes(relpath))

    def read_table(self, relpath: str):
        """Read one parquet output as a pandas DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(relpath)))

    def paths(self, under: str = "") -> list[str]:
        """Output paths (relative), optionally only those below a folder."""
        prefix = under.rstrip("/") + "/" if under else ""
        return sorted(p for p in self.manifest.files if p.startswith(prefix))

    def verify_checksums(self) -> None:
        """Stream every file and compare its sha256 with the manifest (slow; for audits)."""
        for entry in self.manifest.files.values():
            if store.sha256_uri(store.join(self.root, entry.path)) != entry.sha256:
                raise ManifestError(f"stage {self.manifest.stage!r}: file {entry.path} does not match its sha256")

    @property
    def params(self) -> dict[str, Any]:
        """The parameters the stage ran with."""
        return self.manifest.params

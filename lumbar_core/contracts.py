"""What stages declare they read and write, and the guard that holds them to it.

Each stage of the registry (:mod:`lumbar_core.stages`) declares its :class:`Read` s (upstream
stages and the files it needs from them) and its :class:`Write` s (files, with a table schema or a
typed JSON document where they have one). The inline plan, the KFP wiring, the upstream check and
the docs' stage table are derived from these declarations.

While a stage runs under :func:`reading`, :class:`lumbar_core.manifest.StageInput` consults the
guard: opening a stage that was not declared, or a file the declaration does not cover, raises
:class:`~lumbar_core.errors.ContractError`; a stage pinned to an attempt (a pipeline's ``"{stage}@{attempt}"``
references) must still be that attempt. The attempts read are recorded in the new manifest
(``upstream``), which is how a rerun knows that its inputs changed.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lumbar_core.errors import ContractError, ManifestError, UpstreamChangedError


@dataclass(frozen=True)
class Read:
    """One upstream a stage reads.

    Attributes:
        stage: the registry name of the stage that writes it (e.g. ``ingest``).
        files: glob patterns of the files read from it (``()``: only its manifest, e.g. params).
        name_param: the Params field that names the written stage (``ingest_stage``: which ingest);
            None means the stage name is the registry name.
        uri_param: the Params field that holds the committed stage's own prefix in another place
            (a model bundle's URI); '' in that field means this run's stage.
        shards: the stage may live in shards (``{name}-shard-{i}``) that are read too.
    """

    stage: str
    files: tuple[str, ...] = ()
    name_param: str | None = None
    uri_param: str | None = None
    shards: bool = False

    def stage_name(self, params: Any) -> str:
        """The stage this read opens, for a stage's Params."""
        return str(getattr(params, self.name_param)) if self.name_param else self.stage

    def external_uri(self, params: Any) -> str:
        """The prefix of the stage when it lives outside this run ('' when it is this run's)."""
        return str(getattr(params, self.uri_param) or "") if self.uri_param else ""

    def covers(self, relpath: str) -> bool:
        """Whether a file of the upstream stage is among the declared ones."""
        return any(fnmatch.fnmatchcase(relpath, pattern) for pattern in self.files)


@dataclass(frozen=True)
class TableSchema:
    """The columns a parquet table must have (others may follow)."""

    columns: tuple[str, ...]

    def check(self, frame, *, where: str) -> None:
        """Raise :class:`ContractError` naming the table and the missing columns."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ContractError(f"{where}: table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")


@dataclass(frozen=True)
class Write:
    """One output a stage writes: a glob pattern, what it holds, and its schema or document type."""

    path: str
    what: str
    schema: TableSchema | None = None
    document: type | None = None


SHARD = re.compile(r"^(?P<base>.+)-shard-\d+$")


@dataclass
class ReadGuard:
    """The declared reads of one running stage, resolved to store prefixes for its params and run."""

    stage: str
    run_uri: str
    reads: list[tuple[Read, str]]  # (read, prefix of the stage it opens)
    pinned: Mapping[str, str] = field(default_factory=dict)  # this run's stage name -> attempt it must be
    writes: tuple[Write, ...] | None = None  # None: writes are not checked
    opened: dict[str, str] = field(default_factory=dict)  # stage name (this run) or prefix elsewhere -> attempt

    def key(self, prefix: str) -> str:
        """How an upstream is recorded: its stage name when it is in this run, else its whole prefix."""
        run = self.run_uri.rstrip("/") + "/"
        prefix = prefix.rstrip("/")
        return prefix[len(run) :] if prefix.startswith(run) else prefix

    def covering(self, prefix: str) -> Read | None:
        """The declared read that covers the stage at ``prefix`` (itself, or one of its shards), if any."""
        prefix = prefix.rstrip("/")
        shard = SHARD.match(prefix)
        for read, declared in self.reads:
            declared = declared.rstrip("/")
            if prefix == declared or (read.shards and shard is not None and shard.group("base") == declared):
                return read
        return None

    def check_open(self, prefix: str, attempt: str) -> Read:
        """The declaration covering the stage at ``prefix`` (else an error); records and checks its attempt."""
        read = self.covering(prefix)
        key = self.key(prefix)
        if read is None:
            declared = ", ".join(self.key(p) for _, p in self.reads) or "nothing"
            raise ContractError(f"stage {self.stage} opened {key}, which it does not declare (it reads {declared})")
        if key in self.pinned and self.pinned[key] != attempt:
            raise UpstreamChangedError(
                f"{prefix}: committed attempt is {attempt}, but {self.stage} was scheduled after "
                f"{self.pinned[key]}; the stage was rerun meanwhile, so rerun the tasks after it"
            )
        self.opened[key] = attempt
        return read

    def check_file(self, read: Read, prefix: str, relpath: str) -> None:
        """A file of an opened upstream must be among the declared files."""
        if not read.covers(relpath):
            raise ContractError(
                f"stage {self.stage} read {self.key(prefix)}/{relpath}, which its declaration of {read.stage} does not cover "
                f"(declared: {', '.join(read.files) or 'the manifest only'})"
            )

    def check_write(self, relpath: str, frame=None) -> None:
        """An output must match a declared :class:`Write`; a table must have its schema's columns."""
        if self.writes is None:
            return
        for write in self.writes:
            if fnmatch.fnmatchcase(relpath, write.path):
                if frame is not None and write.schema is not None:
                    write.schema.check(frame, where=f"{self.stage}/{relpath}")
                return
        raise ContractError(
            f"stage {self.stage} wrote {relpath}, which it does not declare (declared: {', '.join(w.path for w in self.writes)})"
        )

    def check_document(self, relpath: str, obj) -> None:
        """A JSON output declared with a document type must parse as that type."""
        for write in self.writes or ():
            if write.document is not None and fnmatch.fnmatchcase(relpath, write.path):
                try:
                    write.document.from_dict(obj, where=f"{self.stage}/{relpath}")
                except ManifestError as exc:  # a DocumentError: the stage wrote what its type does not allow
                    raise ContractError(str(exc)) from exc


_guard: contextvars.ContextVar[ReadGuard | None] = contextvars.ContextVar("lumbar_read_guard", default=None)


def current_guard() -> ReadGuard | None:
    """The guard of the stage running in this context, if any."""
    return _guard.get()


@contextlib.contextmanager
def reading(guard: ReadGuard) -> Iterator[ReadGuard]:
    """Hold every :class:`StageInput` opened in the block to ``guard``."""
    token = _guard.set(guard)
    try:
        yield guard
    finally:
        _guard.reset(token)

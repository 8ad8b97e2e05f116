"""The object store: one API over local folders, ``file://`` URIs and ``s3://bucket/prefix``.

Every stage reads and writes through these functions, so a run can live on a laptop's disk or in
any S3-compatible store (AWS, MinIO, SeaweedFS, moto). S3 is reached through boto3 with path-style
addressing and the endpoint from ``AWS_ENDPOINT_URL`` (see :mod:`lumbar_core.settings`).

Writes are all-or-nothing: local files are written to a temporary name and renamed into place;
an S3 PUT or multipart upload is only visible once complete. Transient S3 errors (throttling,
5xx, dropped connections) are retried with exponential backoff by :func:`retry`, the one retry
layer: botocore makes a single HTTP attempt per call and boto3's managed transfers do not retry
downloads themselves, so one logical call makes at most ``LUMBAR_S3_MAX_ATTEMPTS`` attempts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from lumbar_core import settings

T = TypeVar("T")
CHUNK = 8 * 1024 * 1024


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp's 0600 is for the temporary only


class StoreError(OSError):
    """An object store operation failed; the message names the URI."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """The URI names no object."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object under a prefix: its path relative to the prefix and its size in bytes."""

    path: str
    size: int


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (local paths too)."""
    out = uri.rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        raise StoreError(f"unsupported URI scheme in {uri!r}; use a local path, file:// or s3://")
    return Path(uri)


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StoreError(f"S3 URI without a bucket: {uri!r}")
    return bucket, key


# --- S3 client and retries -------------------------------------------------------------------

_clients: dict[tuple[str | None, int], Any] = {}
_clients_lock = threading.Lock()


def _s3():
    """A boto3 S3 client for the current endpoint, one per endpoint and process (thread-safe)."""
    endpoint = settings.aws_endpoint_url()
    key = (endpoint, os.getpid())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": "path"},
                # One HTTP attempt per botocore call: retry() is the only retry layer. In the client
                # config "max_attempts" counts retries (0 = none) and "total_max_attempts" counts the
                # first request too; the latter takes precedence, also over AWS_MAX_ATTEMPTS and
                # ~/.aws/config.
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
            _clients[key] = client
        return client


@functools.cache
def _transfer_config():
    """boto3's managed-transfer settings: no retries of their own (``retry`` retries the whole transfer)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(num_download_attempts=1, preferred_transfer_client="classic")


_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}


def _underlying(exc: BaseException) -> BaseException:
    """The botocore error inside the wrappers of boto3's managed transfers (else ``exc`` itself).

    ``upload_file`` turns a ClientError into ``S3UploadFailedError`` (raised while handling it) and
    ``download_file`` turns a broken stream into ``RetriesExceededError(last_exception)``.
    """
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceededError

    if isinstance(exc, (RetriesExceededError, TransferRetriesExceededError)) and exc.last_exception is not None:
        return exc.last_exception
    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    return exc


def is_transient(exc: BaseException) -> bool:
    """Whether an error from boto3 is worth retrying (throttling, 5xx, broken connections)."""
    from botocore import exceptions as bx

    exc = _underlying(exc)
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError, bx.ResponseStreamingError)):
        return True
    if isinstance(exc, bx.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in _TRANSIENT_CODES
    return isinstance(exc, (ConnectionError, TimeoutError))


def retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int | None = None,
    base_delay: float = 0.2,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Call ``fn`` until it succeeds, backing off exponentially (with jitter) on transient errors.

    Args:
        fn: the operation, called with no arguments.
        what: the URI or operation, for the error message.
        attempts: tries in all (default ``LUMBAR_S3_MAX_ATTEMPTS``).
        base_delay: seconds before the second try; doubles each time, capped at 10 s.
        transient: which errors are retried; others are raised at once.
    """
    attempts = attempts or settings.s3_max_attempts()
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            time.sleep(min(10.0, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError(f"unreachable: {what}")


_CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in ~/.aws/credentials"


def _s3_call(uri: str, op: Callable[[], T]) -> T:
    """Run one S3 operation with retries; map its errors to one-line :class:`StoreError` naming the URI.

    'Not found' becomes :class:`ObjectNotFound`; missing credentials say how to provide them.
    """
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    try:
        return retry(op, what=uri)
    except Exception as exc:
        inner = _underlying(exc)
        if isinstance(inner, NoCredentialsError):
            raise StoreError(f"no S3 credentials for {uri}: {_CREDENTIALS_HINT}") from exc
        if isinstance(inner, PartialCredentialsError):
            raise StoreError(f"incomplete S3 credentials for {uri} ({inner}): {_CREDENTIALS_HINT}") from exc
        if isinstance(inner, ClientError):
            code = str(inner.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFound(f"no such object: {uri}") from None
            if code == "NoSuchBucket":
                raise ObjectNotFound(f"no such bucket: {uri}") from None
            if is_transient(inner):
                raise StoreError(f"S3 error on {uri} after {settings.s3_max_attempts()} attempts: {code}: {inner}") from exc
            raise StoreError(f"S3 error on {uri}: {code}: {inner}") from exc
        if is_transient(inner):
            raise StoreError(f"S3 unreachable for {uri} after {settings.s3_max_attempts()} attempts: {inner}") from exc
        raise


# --- reading --------------------------------------------------------------------------------


def read_bytes(uri: str) -> bytes:
    """The whole content of one object."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_call(uri, lambda: _s3().get_object(Bucket=bucket, Key=key)["Body"].read())
    path = _local_path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ObjectNotFound(f"no such object: {uri}") from None
    except IsADirectoryError:
        raise StoreError(f"{uri} is a folder, not an object") from None
    except OSError as exc:
        raise StoreError(f"cannot read {uri}: {exc.strerror or exc}") from None


def read_text(uri: str) -> str:
    """An object decoded as UTF-8."""
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    """An object parsed as JSON; a parse error names the URI."""
    try:
        return json.loads(read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise StoreError(f"{uri} is not valid JSON: {exc}") from None


def exists(uri: str) -> bool:
    """Whether an object (not a prefix) exists at the URI."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        try:
            _s3_call(uri, lambda: _s3().head_object(Bucket=bucket, Key=key))
            return True
        except ObjectNotFound:
            return False
    return _local_path(uri).is_file()


def size(uri: str) -> int:
    """Size of one object in bytes."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return int(_s3_call(uri, lambda: _s3().head_object(Bucket=bucket, Key=key))["ContentLength"])
    try:
        return _local_path(uri).stat().st_size
    except FileNotFoundError:
        raise ObjectNotFound(f"no such object: {uri}") from None


def list_objects(prefix_uri: str) -> list[ObjectInfo]:
    """Every object below a prefix (recursively), paths relative to it with ``/``, sorted."""
    if is_s3(prefix_uri):
        bucket, key = _split_s3(prefix_uri)
        key = key.rstrip("/") + "/" if key else ""

        def pages() -> list[ObjectInfo]:
            out = []
            for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                for obj in page.get("Contents", []):
                    out.append(ObjectInfo(obj["Key"][len(key) :], int(obj["Size"])))
            return out

        return sorted(_s3_call(prefix_uri, pages), key=lambda o: o.path)
    root = _local_path(prefix_uri)
    if not root.is_dir():
        return []
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".tmp-"):
                continue
            path = Path(dirpath) / name
            out.append(ObjectInfo(path.relative_to(root).as_posix(), path.stat().st_size))
    return sorted(out, key=lambda o: o.path)


@contextlib.contextmanager
def open_read(uri: str) -> Iterator[IO[bytes]]:
    """A binary stream over one object, for objects too large to hold in memory."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        body = _s3_call(uri, lambda: _s3().get_object(Bucket=bucket, Key=key)["Body"])
        try:
            yield body
        finally:
            body.close()
        return
    try:
        with open(_local_path(uri), "rb") as fh:
            yield fh
    except FileNotFoundError:
        raise ObjectNotFound(f"no such object: {uri}") from None


def download(uri: str, local_path: str | os.PathLike) -> Path:
    """Stream one object to a local file (written atomically); returns the path."""
    dest = Path(local_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_local(dest) as tmp:
        if is_s3(uri):
            bucket, key = _split_s3(uri)
            _s3_call(uri, lambda: _s3().download_file(bucket, key, str(tmp), Config=_transfer_config()))
        else:
            try:
                shutil.copyfile(_local_path(uri), tmp)
            except FileNotFoundError:
                raise ObjectNotFound(f"no such object: {uri}") from None
    return dest


def download_prefix(prefix_uri: str, local_dir: str | os.PathLike) -> Path:
    """Copy every object below a prefix into a local folder, keeping relative paths."""
    dest = Path(local_dir)
    for obj in list_objects(prefix_uri):
        download(join(prefix_uri, obj.path), dest / obj.path)
    return dest


def upload_prefix(local_dir: str | os.PathLike, prefix_uri: str) -> None:
    """Copy every file below a local folder to a prefix, keeping relative paths (the inverse of :func:`download_prefix`)."""
    root = Path(local_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        upload(path, join(prefix_uri, path.relative_to(root).as_posix()))


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[Path]:
    """A local path holding the object's content: the file itself when local, else a temporary copy."""
    if not is_s3(uri):
        path = _local_path(uri)
        if not path.is_file():
            raise ObjectNotFound(f"no such object: {uri}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lumbar-") as tmp:
        yield download(uri, Path(tmp) / Path(uri).name)


# --- writing --------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_local(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest`` that is renamed onto it only if the block succeeds."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write {dest}: cannot create its folder: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write one object, replacing any old one; readers see the old or the new, never a part."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(uri, lambda: _s3().put_object(Bucket=bucket, Key=key, Body=data))
        return
    try:
        with _atomic_local(_local_path(uri)) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise StoreError(f"cannot write {uri}: {exc.strerror or exc}") from None


def write_parts(uri: str, parts: Sequence[bytes | memoryview]) -> None:
    """Write one object made of ``parts`` one after another (not joined in memory on local disk)."""
    if is_s3(uri):
        write_bytes(uri, b"".join(parts))
        return
    try:
        with _atomic_local(_local_path(uri)) as tmp, open(tmp, "wb") as fh:
            fh.writelines(parts)
    except OSError as exc:
        raise StoreError(f"cannot write {uri}: {exc.strerror or exc}") from None


def write_text(uri: str, text: str) -> None:
    """Write a UTF-8 text object."""
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj: Any) -> None:
    """Write an object as indented, key-sorted JSON (byte-stable for equal input)."""
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def upload(local_path: str | os.PathLike, uri: str) -> None:
    """Stream a local file to the store (multipart on S3 for large files)."""
    src = Path(local_path)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(uri, lambda: _s3().upload_file(str(src), bucket, key, Config=_transfer_config()))
        return
    dest = _local_path(uri)
    if dest.resolve() == src.resolve():
        return
    with _atomic_local(dest) as tmp:
        shutil.copyfile(src, tmp)


def copy(src_uri: str, dst_uri: str) -> None:
    """Copy one object, across backends too (server-side within one S3 endpoint)."""
    if is_s3(src_uri) and is_s3(dst_uri):
        sb, sk = _split_s3(src_uri)
        db, dk = _split_s3(dst_uri)
        _s3_call(src_uri, lambda: _s3().copy({"Bucket": sb, "Key": sk}, db, dk, Config=_transfer_config()))
    elif is_s3(src_uri):
        with local_file(src_uri) as path:
            upload(path, dst_uri)
    else:
        if not _local_path(src_uri).is_file():
            raise ObjectNotFound(f"no such object: {src_uri}")
        upload(_local_path(src_uri), dst_uri)


_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict"}


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create an object only if none exists; ``False`` when one does (a lock another writer holds).

    Local: the complete content is hard-linked to the name (``link`` refuses an existing name).
    S3: ``PutObject`` with ``If-None-Match: *`` (conditional writes, which AWS S3 and MinIO honour);
    a conflicting concurrent create counts as existing.
    """
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = _split_s3(uri)
        try:
            _s3_call(uri, lambda: _s3().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*"))
        except StoreError as exc:
            inner = _underlying(exc.__cause__) if exc.__cause__ is not None else exc
            if isinstance(inner, ClientError) and inner.response.get("Error", {}).get("Code") in _CONDITION_FAILED:
                return False
            raise
        return True
    path = _local_path(uri)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.link(tmp, path)  # atomic, complete, and refused when the name exists
    except FileExistsError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot create {uri}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return True


def delete(uri: str) -> None:
    """Delete one object; deleting a missing object is not an error."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(uri, lambda: _s3().delete_object(Bucket=bucket, Key=key))
        return
    _local_path(uri).unlink(missing_ok=True)


def delete_prefix(prefix_uri: str) -> None:
    """Delete every object below a prefix."""
    if is_s3(prefix_uri):
        bucket, _ = _split_s3(prefix_uri)
        keys = [_split_s3(join(prefix_uri, o.path))[1] for o in list_objects(prefix_uri)]
        for start in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            _s3_call(prefix_uri, functools.partial(_s3().delete_objects, Bucket=bucket, Delete=batch))
        return
    shutil.rmtree(_local_path(prefix_uri), ignore_errors=True)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_parts(parts: Sequence[bytes | memoryview]) -> str:
    """Hex sha256 of byte strings one after another."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_uri(uri: str) -> str:
    """Hex sha256 of an object, streamed."""
    digest = hashlib.sha256()
    with open_read(uri) as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_io(uri: str) -> io.BytesIO:
    """An object's content as an in-memory binary file (for numpy, pandas, pydicom readers)."""
    return io.BytesIO(read_bytes(uri))

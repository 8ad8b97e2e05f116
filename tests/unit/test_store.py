"""The object store: the same tests on a plain path, file:// and a real S3-compatible server (moto)."""

import http.server
import json
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from lumbar_core import store


def test_write_read_exists_size(store_root):
    uri = store.join(store_root, "a", "b.bin")
    assert not store.exists(uri)
    store.write_bytes(uri, b"hello")
    assert store.exists(uri)
    assert store.read_bytes(uri) == b"hello"
    assert store.size(uri) == 5
    store.write_bytes(uri, b"replaced")
    assert store.read_bytes(uri) == b"replaced"


def test_an_object_written_in_parts_is_their_concatenation(store_root):
    uri = store.join(store_root, "parts", "v.bin")
    parts = [b"head", memoryview(b"0123456789")[2:6], b""]
    store.write_parts(uri, parts)
    assert store.read_bytes(uri) == b"head2345"
    assert store.sha256_parts(parts) == store.sha256_bytes(b"head2345")


def test_json_and_text(store_root):
    store.write_json(store.join(store_root, "x.json"), {"b": 1, "a": [1, 2]})
    assert store.read_json(store.join(store_root, "x.json")) == {"a": [1, 2], "b": 1}
    store.write_text(store.join(store_root, "t.txt"), "é")
    assert store.read_text(store.join(store_root, "t.txt")) == "é"
    store.write_text(store.join(store_root, "bad.json"), "{not json")
    with pytest.raises(store.StoreError, match="bad.json"):
        store.read_json(store.join(store_root, "bad.json"))


def test_missing_object_names_the_uri(store_root):
    uri = store.join(store_root, "nope.txt")
    with pytest.raises(store.ObjectNotFound, match="nope.txt"):
        store.read_bytes(uri)
    with pytest.raises(FileNotFoundError):
        store.size(uri)


def test_list_is_recursive_relative_and_sorted(store_root):
    for name in ["z.txt", "d/one.txt", "d/e/two.txt"]:
        store.write_bytes(store.join(store_root, "p", name), name.encode())
    store.write_bytes(store.join(store_root, "p2", "other.txt"), b"x")  # a sibling prefix is not listed
    listed = store.list_objects(store.join(store_root, "p"))
    assert [(o.path, o.size) for o in listed] == [("d/e/two.txt", 11), ("d/one.txt", 9), ("z.txt", 5)]
    assert store.list_objects(store.join(store_root, "empty")) == []


def test_copy_delete_and_prefix_delete(store_root, tmp_path):
    src = store.join(store_root, "src.bin")
    store.write_bytes(src, b"data")
    store.copy(src, store.join(store_root, "dst", "copy.bin"))
    assert store.read_bytes(store.join(store_root, "dst", "copy.bin")) == b"data"
    store.copy(src, str(tmp_path / "out" / "local.bin"))  # across backends
    assert (tmp_path / "out" / "local.bin").read_bytes() == b"data"
    store.delete(src)
    store.delete(src)  # deleting twice is fine
    assert not store.exists(src)
    store.delete_prefix(store.join(store_root, "dst"))
    assert store.list_objects(store.join(store_root, "dst")) == []


def test_streaming_upload_download_of_a_large_file(store_root, tmp_path):
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB: multipart on S3
    big.write_bytes(payload)
    uri = store.join(store_root, "big", "big.bin")
    store.upload(big, uri)
    assert store.size(uri) == len(payload)
    back = store.download(uri, tmp_path / "back" / "big.bin")
    assert store.sha256_file(back) == store.sha256_file(big) == store.sha256_uri(uri)
    with store.open_read(uri) as fh:
        assert fh.read(256) == bytes(range(256))
    with store.local_file(uri) as path:
        assert path.stat().st_size == len(payload)


def test_download_prefix(store_root, tmp_path):
    for name in ["a.txt", "sub/b.txt"]:
        store.write_bytes(store.join(store_root, "tree", name), name.encode())
    out = store.download_prefix(store.join(store_root, "tree"), tmp_path / "tree")
    assert (out / "sub" / "b.txt").read_bytes() == b"sub/b.txt"


def test_local_writes_leave_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    store.write_bytes(str(target), b"old")

    class Boom(Exception):
        pass

    def explode(obj, *a, **k):
        raise Boom

    monkeypatch.setattr(json, "dumps", explode)
    with pytest.raises(Boom):
        store.write_json(str(target), {"new": 1})
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where a folder should be")
    with pytest.raises(store.StoreError, match="blocker/x.bin"):
        store.write_bytes(str(blocker / "x.bin"), b"1")


def test_unknown_scheme_is_refused():
    with pytest.raises(store.StoreError, match="gs://"):
        store.read_bytes("gs://bucket/key")


def test_missing_bucket_is_named(s3_server):
    with pytest.raises(store.ObjectNotFound, match="no-such-bucket"):
        store.read_bytes("s3://no-such-bucket/key")


def test_retry_backs_off_on_transient_errors_only():
    from botocore.exceptions import ClientError, EndpointConnectionError

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return "ok"

    assert store.retry(flaky, what="x", attempts=5, base_delay=0.001) == "ok"
    assert len(calls) == 3

    permanent = []

    def denied():
        permanent.append(1)
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(ClientError):
        store.retry(denied, what="x", attempts=5, base_delay=0.001)
    assert len(permanent) == 1

    slow = []

    def throttled():
        slow.append(1)
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "later"}}, "PutObject")

    with pytest.raises(ClientError):
        store.retry(throttled, what="x", attempts=4, base_delay=0.001)
    assert len(slow) == 4


def test_unreachable_endpoint_is_reported_after_retries(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("LUMBAR_S3_MAX_ATTEMPTS", "2")
    with pytest.raises(store.StoreError, match="s3://b/k"):
        store.read_bytes("s3://b/k")


class _Always503(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that is always unavailable; counts the requests it gets."""

    requests: ClassVar[list[str]] = []

    def _log(self) -> None:
        type(self).requests.append(f"{self.command} {self.path}")

    def _refuse(self) -> None:
        self._log()
        length = int(self.headers.get("Content-Length") or 0)
        if length and self.headers.get("Expect", "").lower() != "100-continue":
            self.rfile.read(length)
        body = b"<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _refuse

    def log_message(self, *args) -> None:
        pass


class _TruncatedBody(_Always503):
    """An endpoint whose objects exist (HEAD answers 100 bytes) but whose GETs break off after 10 bytes."""

    def do_HEAD(self) -> None:
        self._log()
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.send_header("ETag", '"abc"')
        self.send_header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True


def _serve(handler: type[_Always503], monkeypatch) -> Iterator[list[str]]:
    """Serve ``handler`` on a free loopback port as this test's S3 endpoint; yields its request log."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.requests = []
    monkeypatch.setattr(store, "_clients", {})
    monkeypatch.setattr(store, "time", types.SimpleNamespace(sleep=lambda seconds: None))  # no backoff waits
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")  # botocore's own setting must not add attempts
    monkeypatch.setenv("LUMBAR_S3_MAX_ATTEMPTS", "3")
    try:
        yield handler.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unavailable_s3(monkeypatch) -> Iterator[list[str]]:
    """An endpoint answering 503 to everything."""
    yield from _serve(_Always503, monkeypatch)


@pytest.fixture
def truncating_s3(monkeypatch) -> Iterator[list[str]]:
    """An endpoint whose downloads always break off."""
    yield from _serve(_TruncatedBody, monkeypatch)


def test_one_logical_call_makes_exactly_max_attempts_http_attempts(unavailable_s3, tmp_path):
    """One retry layer: each store call makes LUMBAR_S3_MAX_ATTEMPTS requests, not attempts x botocore's."""
    small = tmp_path / "small.bin"
    small.write_bytes(b"12345")
    calls = {
        "read_bytes": lambda: store.read_bytes("s3://b/k"),
        "write_bytes": lambda: store.write_bytes("s3://b/k", b"data"),
        "size": lambda: store.size("s3://b/k"),
        "list_objects": lambda: store.list_objects("s3://b/p"),
        "download": lambda: store.download("s3://b/k", tmp_path / "out.bin"),
        "upload": lambda: store.upload(small, "s3://b/k"),
    }
    for name, call in calls.items():
        unavailable_s3.clear()
        with pytest.raises(store.StoreError, match=r"s3://b/.*after 3 attempts"):
            call()
        assert len(unavailable_s3) == 3, (name, unavailable_s3)


def test_a_broken_download_is_retried_by_the_store_only(truncating_s3, tmp_path):
    """boto3's download_file retries broken streams itself unless told not to: only the store retries."""
    for call in (lambda: store.download("s3://b/k", tmp_path / "out.bin"), lambda: store.read_bytes("s3://b/k")):
        truncating_s3.clear()
        with pytest.raises(store.StoreError, match=r"s3://b/k.*after 3 attempts"):
            call()
        assert len([r for r in truncating_s3 if r.startswith("GET")]) == 3, truncating_s3


def test_botocore_makes_one_attempt_per_call(monkeypatch):
    monkeypatch.setattr(store, "_clients", {})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    assert store._s3().meta.config.retries["total_max_attempts"] == 1
    assert store._transfer_config().num_download_attempts == 1


def test_s3_without_credentials_is_one_clear_line(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("BOTO_CONFIG", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(store, "_clients", {})
    for call in (lambda: store.read_bytes("s3://bucket/key.bin"), lambda: store.download("s3://bucket/key.bin", tmp_path / "x")):
        with pytest.raises(store.StoreError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "s3://bucket/key.bin" in message
        assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message and "profile" in message


def test_a_file_that_cannot_be_read_is_a_store_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "secret.dcm"
    path.write_bytes(b"x")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # root reads files whatever their mode, so the refusal is simulated
    with pytest.raises(store.StoreError, match=r"cannot read .*secret.dcm: Permission denied"):
        store.read_bytes(str(path))

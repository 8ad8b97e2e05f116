"""The object store: the same tests on a plain path, file:// and a real S3-compatible server (moto)."""

import json

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

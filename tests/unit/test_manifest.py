"""Stage manifests on every store backend."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lumbar_core import store
from lumbar_core.manifest import LOCK, LOCK_STALE_S, MANIFEST, ManifestError, StageInput, StageOutput


def _write_stage(run, stage="ingest", content=b"v1", params=None):
    out = StageOutput(run, stage)
    out.write_bytes("index.bin", content)
    out.write_json("meta/info.json", {"n": len(content)})
    return out, out.commit(params=params or {"workers": 2}, metrics={"files": 2})


def test_commit_then_read(store_root):
    _write_stage(store_root)
    stage = StageInput.open(store_root, "ingest")
    assert stage.read_bytes("index.bin") == b"v1"
    assert stage.read_json("meta/info.json") == {"n": 2}
    assert stage.params == {"workers": 2}
    assert stage.paths() == ["index.bin", "meta/info.json"]
    assert stage.paths("meta") == ["meta/info.json"]
    raw = store.read_json(store.join(store_root, "ingest", MANIFEST))
    assert {f["path"] for f in raw["files"]} == {"index.bin", "meta/info.json"}
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in raw["files"])
    assert raw["code_version"] and raw["created"] and raw["metrics"] == {"files": 2}
    stage.verify_checksums()


def test_a_stage_without_manifest_is_refused(store_root):
    out = StageOutput(store_root, "ingest")
    out.write_bytes("index.bin", b"half done")  # crashed before commit
    with pytest.raises(ManifestError, match="stage 'ingest' has no _SUCCESS.json.*run it first"):
        StageInput.open(store_root, "ingest")


def test_missing_or_changed_files_are_named(store_root):
    out, _ = _write_stage(store_root)
    store.write_bytes(out.uri("index.bin"), b"v1 but longer")
    with pytest.raises(ManifestError, match="'ingest': file index.bin has 13 bytes, manifest says 2"):
        StageInput.open(store_root, "ingest")
    store.write_bytes(out.uri("index.bin"), b"v2")  # same size, other content
    stage = StageInput.open(store_root, "ingest")
    with pytest.raises(ManifestError, match="index.bin does not match its sha256"):
        stage.read_bytes("index.bin")
    store.delete(out.uri("meta/info.json"))
    with pytest.raises(ManifestError, match="meta/info.json listed in _SUCCESS.json is missing"):
        StageInput.open(store_root, "ingest")


def test_unknown_output_lists_what_exists(store_root):
    _write_stage(store_root)
    with pytest.raises(ManifestError, match="no output 'volumes.npz'; it has: index.bin, meta/info.json"):
        StageInput.open(store_root, "ingest").uri("volumes.npz")


def test_rerun_flips_atomically_and_prunes_old_attempts(store_root):
    _write_stage(store_root, content=b"v1")
    reader_on_first = StageInput.open(store_root, "ingest")
    second = StageOutput(store_root, "ingest")
    second.write_bytes("index.bin", b"v2!")
    # until the new manifest is written, readers still get the complete first attempt
    assert StageInput.open(store_root, "ingest").read_bytes("index.bin") == b"v1"
    second.commit(params={})
    assert StageInput.open(store_root, "ingest").read_bytes("index.bin") == b"v2!"
    assert reader_on_first.read_bytes("index.bin") == b"v1"  # the one before is kept
    third, _ = _write_stage(store_root, content=b"v3")
    attempts = {o.path.split("/")[0] for o in store.list_objects(store.join(store_root, "ingest")) if "/" in o.path}
    assert attempts == {second.attempt, third.attempt}


def test_no_writes_after_commit(tmp_path):
    out, _ = _write_stage(str(tmp_path))
    with pytest.raises(ManifestError, match="after commit"):
        out.write_bytes("late.bin", b"x")


def test_manifest_of_another_stage_is_refused(tmp_path):
    _write_stage(str(tmp_path), stage="ingest")
    raw = store.read_bytes(store.join(str(tmp_path), "ingest", MANIFEST))
    store.write_bytes(store.join(str(tmp_path), "score", MANIFEST), raw)
    with pytest.raises(ManifestError, match="belongs to stage 'ingest', not 'score'"):
        StageInput.open(str(tmp_path), "score")


def test_upload_dir(tmp_path, store_root):
    src = tmp_path / "model"
    (src / "fold_0").mkdir(parents=True)
    (src / "fold_0" / "checkpoint.pth").write_bytes(b"weights")
    (src / "plans.json").write_text("{}")
    out = StageOutput(store_root, "nnunet-train")
    out.upload_dir(src, "results")
    out.commit()
    stage = StageInput.open(store_root, "nnunet-train")
    assert stage.paths("results") == ["results/fold_0/checkpoint.pth", "results/plans.json"]
    assert stage.read_bytes("results/fold_0/checkpoint.pth") == b"weights"


def test_a_commit_never_prunes_another_writers_attempt_in_progress(store_root):
    first, second = StageOutput(store_root, "s"), StageOutput(store_root, "s")
    first.write_text("a.txt", "first")
    second.write_text("a.txt", "second")
    first.commit()
    assert store.read_text(second.uri("a.txt")) == "second"
    second.commit()
    assert StageInput.open(store_root, "s").read_bytes("a.txt") == b"second"
    third = StageOutput(store_root, "s")
    third.write_text("a.txt", "third")
    third.commit()
    attempts = {o.path.split("/")[0] for o in store.list_objects(store_root + "/s") if "/" in o.path}
    assert attempts == {second.attempt, third.attempt}, "the one before is kept, older committed ones are pruned"


def test_concurrent_writers_leave_a_valid_stage(store_root):
    def write(i: int) -> str:
        out = StageOutput(store_root, "s")
        for k in range(3):
            out.write_text(f"f{k}.txt", f"{i}-{k}")
        out.commit(metrics={"writer": i})
        return out.attempt

    with ThreadPoolExecutor(max_workers=6) as pool:
        attempts = list(pool.map(write, range(6)))
    stage = StageInput.open(store_root, "s")
    stage.verify_checksums()
    assert stage.manifest.attempt in attempts
    assert stage.read_bytes("f2.txt") == f"{stage.manifest.metrics['writer']}-2".encode()
    assert not store.exists(store_root + "/s/" + LOCK)


def test_a_stale_commit_lock_is_taken_over_and_a_live_one_waited_for(store_root):
    lock = store_root + "/s/" + LOCK
    store.write_bytes(lock, json.dumps({"attempt": "dead", "since": time.time() - LOCK_STALE_S - 1}).encode())
    out = StageOutput(store_root, "s")
    out.write_text("a.txt", "x")
    out.commit()
    assert not store.exists(lock)
    store.write_bytes(lock, json.dumps({"attempt": "alive", "since": time.time()}).encode())
    threading.Timer(0.5, store.delete, args=(lock,)).start()
    out = StageOutput(store_root, "s")
    out.write_text("a.txt", "y")
    started = time.time()
    out.commit()
    assert time.time() - started >= 0.4
    assert StageInput.open(store_root, "s").read_bytes("a.txt") == b"y"

"""Determinism, parallel generation, bad input and all-or-nothing output; the CLI and its preview."""

import hashlib

import pytest

from lumbar_core.cli import main
from lumbar_core.synthetic import SynthError, generate, get_profile
from lumbar_core.synthetic import dataset as generate_module


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_in_parallel_or_not(tmp_path):
    tiny = get_profile("tiny")
    generate(tmp_path / "a", studies=2, test_studies=1, profile=tiny, seed=5, workers=1, spider_cases=1)
    generate(tmp_path / "b", studies=2, test_studies=1, profile=tiny, seed=5, workers=2, spider_cases=1)
    generate(tmp_path / "c", studies=2, test_studies=1, profile=tiny, seed=6, workers=1, spider_cases=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"studies": -1}, "studies must be >= 0"),
        ({"studies": 1, "test_studies": -2}, "test_studies must be >= 0"),
        ({"studies": 0, "test_studies": 0}, "nothing to generate"),
    ],
)
def test_bad_counts(tmp_path, kwargs, message):
    with pytest.raises(SynthError, match=message):
        generate(tmp_path / "x", profile=get_profile("tiny"), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unknown_profile_and_setting():
    with pytest.raises(ValueError, match="unknown profile 'huge'; valid: tiny, realistic"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown phantom setting 'slices'"):
        get_profile("tiny").with_overrides({"slices": "3"})


def test_unwritable_or_occupied_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SynthError, match="cannot write the output folder"):
        generate(blocker / "data", studies=1, profile=get_profile("tiny"))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        generate(occupied, studies=1, profile=get_profile("tiny"))
    assert (occupied / "keep.txt").read_text() == "mine"


def test_a_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    real = generate_module.generate_study
    calls = []

    def failing(task):
        calls.append(task)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(task)

    monkeypatch.setattr(generate_module, "generate_study", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "out", studies=3, profile=get_profile("tiny"), workers=1, spider_cases=0)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_whole(tmp_path):
    out = tmp_path / "out"
    generate(out, studies=1, profile=get_profile("tiny"), workers=1, spider_cases=0, seed=1)
    (out / "stale.txt").write_text("old")
    generate(out, studies=1, profile=get_profile("tiny"), workers=1, spider_cases=0, seed=2, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_synth_with_preview(tmp_path, capsys):
    png = tmp_path / "preview.png"
    code = main(["synth", "--out", str(tmp_path / "d"), "--studies", "2", "--test-studies", "1", "--workers", "1",
                 "--set", "spider_cases=1", "--preview", str(png)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 2 training and 1 test studies" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert main(["synth", "--out", str(tmp_path / "e"), "--studies", "-3"]) == 2
    assert "studies must be >= 0" in capsys.readouterr().err

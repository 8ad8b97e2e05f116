"""Volume files: every codec round-trips exactly, old deflated .npz files stay readable, bad settings are refused."""

import io

import numpy as np
import pytest

from lumbar_core.errors import UserError
from lumbar_core.ingested import CODECS, check_codec, load_arrays, save_volume
from lumbar_core.stages.ingest import IngestParams, run

ARRAYS = {
    "pixels": (np.random.default_rng(0).normal(300, 80, (6, 64, 48))).clip(0, 4095).astype(np.int16),
    "ipp": np.arange(18, dtype=float).reshape(6, 3),
    "instance_numbers": np.arange(1, 7),
}


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips(codec):
    back = load_arrays(save_volume(ARRAYS, codec=codec, level=0 if codec == "none" else 1))
    assert set(back) == set(ARRAYS)
    for name, array in ARRAYS.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)


def test_blosc_codecs_are_smaller_than_deflate_on_mr_like_pixels():
    sizes = {codec: len(save_volume({"pixels": ARRAYS["pixels"]}, codec=codec, level=1)) for codec in ("zstd", "lz4", "deflate")}
    assert sizes["zstd"] < sizes["deflate"] and sizes["lz4"] < sizes["deflate"], sizes


def test_files_written_by_numpy_are_read():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ARRAYS)
    assert np.array_equal(load_arrays(buffer.getvalue())["pixels"], ARRAYS["pixels"])


@pytest.mark.parametrize(
    ("codec", "level", "message"), [("brotli", 1, "codec 'brotli'"), ("zstd", 12, "level 12"), ("deflate", -1, "level -1")]
)
def test_bad_settings_are_refused(codec, level, message):
    with pytest.raises(ValueError, match=message):
        check_codec(codec, level)


def test_ingest_refuses_a_bad_codec_before_reading_anything(tmp_path):
    with pytest.raises(UserError, match="ingest: compression level 12"):
        run(data_uri=str(tmp_path / "absent"), run_uri=str(tmp_path / "run"), params=IngestParams(compression=12))

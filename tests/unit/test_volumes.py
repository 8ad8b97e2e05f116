"""Volume files: every codec round-trips exactly, files of older versions stay readable, bad settings are refused."""

import io
import zipfile

import blosc2
import numpy as np
import pytest

from lumbar_core.errors import UserError
from lumbar_core.ingested import CODECS, MAGIC, check_codec, encode_volume, load_arrays, save_volume
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


def test_a_stack_given_as_slices_is_the_stacked_volume():
    slices = [ARRAYS["pixels"][k] for k in range(6)]
    for codec in CODECS:
        back = load_arrays(save_volume({"pixels": slices}, codec=codec, level=1 if codec != "none" else 0))["pixels"]
        assert back.shape == (6, 64, 48) and np.array_equal(back, ARRAYS["pixels"]), codec


def test_slices_of_mixed_types_take_their_common_type():
    slices = [np.full((40, 40), 7, np.uint16), np.full((40, 40), -3, np.int16)]
    back = load_arrays(save_volume({"pixels": slices}, codec="lz4"))["pixels"]
    assert back.dtype == np.result_type(np.uint16, np.int16) and back[0, 0, 0] == 7 and back[1, 0, 0] == -3


def test_a_stack_file_is_one_blosc2_chunk_per_slice_after_a_json_header():
    parts = encode_volume(ARRAYS, codec="zstd", level=1)
    data = b"".join(parts)
    assert data.startswith(MAGIC)
    assert len(parts) == 1 + 6 + 2  # header, six pixel slices, two small raw arrays
    assert blosc2.get_cbuffer_sizes(parts[1])[0] == 64 * 48 * 2


@pytest.mark.parametrize("cut", [5, 40, -10])
def test_a_truncated_stack_file_is_refused(cut):
    data = save_volume(ARRAYS, codec="lz4")
    with pytest.raises(ValueError, match="stack file|header|JSON|Expecting|Unterminated"):
        load_arrays(data[:cut])


def test_zip_files_with_blosc2_members_of_the_previous_version_are_read():
    pixels = ARRAYS["pixels"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(pixels))
    chunk = blosc2.compress2(pixels, codec=blosc2.Codec.LZ4, filters=[blosc2.Filter.BITSHUFFLE], typesize=2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pixels.npy.blosc2", header.getvalue() + chunk)
        with archive.open("ipp.npy", "w") as fh:
            np.lib.format.write_array(fh, ARRAYS["ipp"])
    back = load_arrays(buffer.getvalue())
    assert np.array_equal(back["pixels"], pixels) and np.array_equal(back["ipp"], ARRAYS["ipp"])


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

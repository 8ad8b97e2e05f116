import numpy as np
import pytest

from lumbar_core.dicom import SliceRecord, group_stacks
from lumbar_core.geometry import plane_centred
from lumbar_core.params import ParamsError
from lumbar_core.stages import STAGES, get_stage
from lumbar_core.stages.ingest import IngestParams


def test_params_round_trip_and_coerce_strings():
    p = IngestParams.from_dict({"split": "test", "workers": "3", "studies": "5,7", "shard_count": 2})
    assert p == IngestParams(split="test", workers=3, studies=(5, 7), shard_count=2)
    assert IngestParams.from_dict(p.to_dict()) == p
    with pytest.raises(ParamsError, match="unknown parameter.*workerz.*valid: split, workers"):
        IngestParams.from_dict({"workerz": 1})
    with pytest.raises(ParamsError, match="IngestParams.workers"):
        IngestParams.from_dict({"workers": "many"})


@pytest.mark.parametrize("name", list(STAGES))
def test_every_registered_stage_is_complete(name):
    spec = get_stage(name)
    assert spec.node in ("cpu", "gpu")
    assert spec.params.from_dict({}) == spec.params()
    assert spec.help
    with pytest.raises(KeyError, match="valid: ingest"):
        get_stage("no-such-stage")


def _record(z, instance, normal=(0, 0, 1.0)):
    row = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    col = np.cross(np.array(normal), row)
    plane = plane_centred(np.array([0, 0, z]) if normal[2] else np.array([z, 0, 0]), row, col, (1.0, 1.0), (4, 4))
    return SliceRecord(instance, plane, np.full((4, 4), instance, dtype=np.uint16), None, "Axial T2", f"{instance}.dcm")


def test_stacks_split_by_orientation_and_gaps_and_sort_in_space():
    # two per-disc stacks with the same orientation, 40 mm apart, instance numbers shuffled
    zs = [0, 4, 8, 40, 44, 48]
    numbers = [6, 2, 4, 1, 5, 3]
    records = [_record(z, n) for z, n in zip(zs, numbers)]
    records += [_record(x, 10 + i, normal=(1.0, 0, 0)) for i, x in enumerate([0, 3, 6])]
    stacks = group_stacks(list(reversed(records)))
    assert [len(s.slices) for s in stacks] == [3, 3, 3]
    by_first = {s.instance_numbers[0]: s for s in stacks}
    assert by_first[1].instance_numbers == [1, 5, 3] and by_first[6].instance_numbers == [6, 2, 4]
    assert by_first[10].slice_order == "ascending" and by_first[1].slice_order == "unordered"
    assert by_first[6].slice_spacing == pytest.approx(4.0)
    np.testing.assert_array_equal(by_first[6].volume()[:, 0, 0], [6, 2, 4])

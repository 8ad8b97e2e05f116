"""A task's CPU budget: affinity capped by a cgroup quota, split among shards that share a machine."""

import pytest

from lumbar_core import cpus


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_v2_v1_or_none(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus.cgroup_quota(tmp_path) == quota


def test_the_budget_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    affinity = cpus.cpu_budget(tmp_path)  # no quota files: the affinity
    assert affinity >= 1
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cpus.cpu_budget(tmp_path) == 1, "half a CPU still gets a thread"
    (tmp_path / "cpu.max").write_text(f"{100000 * (affinity + 4)} 100000\n")
    assert cpus.cpu_budget(tmp_path) == affinity, "a quota above the affinity does not add cores"


def test_shards_split_the_budget_only_where_they_share_a_machine(monkeypatch):
    assert cpus.task_threads(2, shared=True, budget=8) == 4
    assert cpus.task_threads(3, shared=True, budget=2) == 1
    assert cpus.task_threads(2, shared=False, budget=8) == 8, "a pod per shard: each has its own budget"
    assert cpus.task_threads(1, shared=True, budget=8) == 8
    monkeypatch.setenv(cpus.SHARED_ENV, "1")
    assert cpus.task_threads(2, budget=6) == 3
    monkeypatch.delenv(cpus.SHARED_ENV)
    assert cpus.task_threads(2, budget=6) == 6

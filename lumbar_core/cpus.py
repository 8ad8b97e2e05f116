"""How many CPUs a task may use, and torch's thread count to match.

torch starts as many threads as the machine has cores. In a pod with a CPU limit that is more threads
than the quota lets run, and on one machine running several tasks at once (kfp.local's parallel
shards) the tasks' threads fight for the same cores; either way the threads mostly wait for each
other. A task therefore uses its CPU budget: its CPU affinity, capped by its cgroup's CPU quota (the
pod's limit), divided among its sibling shards where they share this machine (``LUMBAR_SHARED_CPUS=1``,
which ``lumbar run``'s kfp.local runner sets).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SHARED_ENV = "LUMBAR_SHARED_CPUS"


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us``) quota; None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cpu_budget(root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by its cgroup quota (rounded up), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def task_threads(shard_count: int = 1, *, shared: bool | None = None, budget: int | None = None) -> int:
    """Threads for one task: the CPU budget, split among ``shard_count`` shards running on this machine."""
    budget = cpu_budget() if budget is None else budget
    shared = os.environ.get(SHARED_ENV) == "1" if shared is None else shared
    return max(1, budget // max(1, shard_count)) if shared else budget


def limit_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads."""
    import torch

    torch.set_num_threads(threads)

"""fan-out (cpu): the items a ParallelFor runs over, one per shard, each carrying what its task needs.

Each item is ``{"shard_index": i, "studies": [...], "after": [...]}``: the shard tasks read their
upstream values from the loop item only (kfp.local replaces any other task output given to a loop
body by the loop item, so loop bodies take nothing else from upstream tasks).
"""

from kfp import dsl

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fan_out(count: int, studies: list, after: list) -> list:
    """``count`` items (shard 0..count-1), each with the same ``studies`` and ``after``; count < 1 is an error."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    return [{"shard_index": i, "studies": [int(s) for s in studies], "after": list(after)} for i in range(count)]

"""pipelines.console.quiet_kfp_local on a toy pipeline run by kfp.local's SubprocessRunner (no project stages).

The toy pipeline fans out with ParallelFor and merges with dsl.Collected like the real ones, so tasks run
in kfp.local's worker threads; its first task prints a few hundred lines. No ``from __future__ import
annotations`` here: kfp reads the components' annotations as types.
"""

import builtins
import logging
import re
import sys
import warnings

import pytest
from kfp import dsl, local
from kfp.local import config as local_config

from pipelines.console import quiet_kfp_local

IMAGE = "registry.example/toy:1"  # not a python image: kfp.local warns that it ignores it
LINE = re.compile(r"^  (?P<task>\S+) +(?P<status>SUCCESS|FAILURE) +\d+\.\d min$")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def chatty(n: int) -> int:
    import sys

    for i in range(n):
        print(f"chatty line {i}")
    print("chatty on stderr", file=sys.stderr)
    return n


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def shard(i: int) -> int:
    print(f"shard {i} done")
    return i


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def merge(parts: list[int]) -> int:
    total = int(sum(parts))  # Collected ints come back as JSON numbers (floats)
    print(f"merged {total}")
    return total


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def boom(n: int):
    for i in range(n):
        print(f"boom line {i}")
    raise ValueError("boom: the failing stage")


@dsl.pipeline(name="toy")
def toy(n: int = 300):
    first = chatty(n=n)
    first.set_memory_limit("1G")  # a setting kfp.local ignores (it warns)
    with dsl.ParallelFor([1, 2]) as i:
        part = shard(i=i).after(first)
    merge(parts=dsl.Collected(part.output))


@dsl.pipeline(name="toy-fails")
def toy_fails():
    boom(n=80).after(chatty(n=3))


def _globals() -> tuple:
    root = logging.getLogger()
    return sys.stdout, sys.stderr, builtins.print, root.handlers[:], root.level, root.filters[:], warnings.showwarning


@pytest.fixture
def kfp_local(tmp_path):
    """kfp.local initialised with a pipeline root under tmp_path (no workspace_root: kfp.local deletes it)."""
    saved = local_config.LocalExecutionConfig.instance
    root = tmp_path / "_kfp"
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    yield root
    local_config.LocalExecutionConfig.instance = saved


def _console(capfd) -> tuple[list[str], str]:
    out, err = capfd.readouterr()
    return out.splitlines(), err


def test_one_console_line_per_task_and_the_rest_in_the_log(kfp_local, capfd):
    log_path = kfp_local / "kfp-local.log"
    before = _globals()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with quiet_kfp_local(log_path, print):
            toy(n=300)
    assert _globals() == before
    lines, err = _console(capfd)
    assert lines[0] == f"kfp.local log: {log_path}"
    tasks = [LINE.match(line) for line in lines[1:]]
    assert all(tasks), lines
    assert sorted(m["task"] for m in tasks) == ["chatty", "merge", "shard", "shard"]
    assert {m["status"] for m in tasks} == {"SUCCESS"}
    assert err == ""
    text = log_path.read_text()
    for expected in ("chatty line 0", "chatty line 299", "chatty on stderr", "shard 2 done", "merged 3"):
        assert expected in text
    assert "Executing task 'chatty'" in text and "finished with status SUCCESS" in text
    assert "non-Python base image" in text and "have no effect in the current local runner" in text
    assert "\x1b[" not in text  # colours removed


def test_failing_task_shows_its_line_and_tail(kfp_local, capfd):
    log_path = kfp_local / "kfp-local.log"
    before = _globals()
    with pytest.raises(RuntimeError, match="finished with status"), quiet_kfp_local(log_path):
        toy_fails()
    assert _globals() == before
    lines, _ = _console(capfd)
    out = "\n".join(lines)
    statuses = {m["task"]: m["status"] for m in map(LINE.match, lines) if m}
    assert statuses == {"chatty": "SUCCESS", "boom": "FAILURE"}
    assert "--- last" in out and "task boom" in out
    assert "ValueError: boom: the failing stage" in out
    assert "boom line 79" in out and "boom line 0\n" not in out + "\n"  # only the tail
    assert len([line for line in lines if line.startswith("  | ")]) <= 30
    assert lines[-1] == f"--- full log: {log_path}"
    assert "boom line 0" in log_path.read_text()


def test_other_warnings_reach_the_console_and_globals_are_restored(tmp_path, capsys):
    log_path = tmp_path / "deep" / "kfp-local.log"
    before = _globals()
    got: list[str] = []
    with pytest.raises(KeyError), quiet_kfp_local(log_path, got.append):
        print("to the file")
        sys.stderr.write("also to the file\n")
        logging.getLogger("kfp.local.anything").warning("a kfp record")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            noop = "'.set_retry()' is not used by the current local runner and will be ignored."
            warnings.warn(noop, stacklevel=1)
            warnings.warn("something unexpected", stacklevel=1)
        builtins.print = lambda *a, **k: None  # as a stray kfp.local indent wrapper would stay
        raise KeyError("x")
    assert _globals() == before
    assert capsys.readouterr() == ("", "")
    assert got[0] == f"kfp.local log: {log_path}"
    assert "warning: UserWarning: something unexpected" in got
    assert not any("set_retry" in line for line in got if not line.startswith("  | "))  # but in the log's tail
    assert any(line.startswith("--- last ") and line.endswith(" lines of the log ---") for line in got)
    assert got[-1] == f"--- full log: {log_path}"
    text = log_path.read_text()
    for expected in ("to the file", "also to the file", "a kfp record", "set_retry", "something unexpected"):
        assert expected in text

"""A quiet console for kfp.local: its output goes to a log file, the console gets one line per finished task.

kfp.local (2.17) writes everything to ``sys.stdout``: each log call enters ``local_logger_context``,
which replaces the root logger's handlers by a ``StreamHandler(sys.stdout)`` made there and then, and
the SubprocessRunner starts each task with ``stdout=PIPE, stderr=STDOUT`` and ``print``s its lines
(indented: ``builtins.print`` is swapped while a task runs). Nothing reaches the terminal at the
file-descriptor level, so swapping ``sys.stdout``/``sys.stderr`` (warnings print to ``sys.stderr``)
catches it all, including the task subprocesses and anything they start.

Task events come from kfp.local's own records, read by a filter on the root logger (kfp logs through
the root logger and clears its handlers, never its filters):

* ``Executing task 'NAME'`` (``task_dispatcher.run_single_task_implementation``, the importer too),
* ``Task 'NAME' finished with status SUCCESS`` / ``FAILURE`` (same places; inside a pipeline a failed
  task is logged, and the pipeline then raises),
* ``Task NAME cache hit (...)`` (``orchestrator.task_executor``, with ``enable_caching``).

The thread that logs ``Executing task`` runs that task and ``print``s its subprocess' lines, so each
captured line is attributed to the task open in its thread (ParallelFor runs tasks in threads): that
gives each task's tail for a failure.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import io
import logging
import re
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own messages (kfp/local/task_dispatcher.py, importer_handler.py, orchestrator/task_executor.py).
EXECUTING = re.compile(r"^Executing task (?P<q>['\"])(?P<task>.+)(?P=q)$")
FINISHED = re.compile(r"^Task (?P<q>['\"])(?P<task>.+)(?P=q) finished with status (?P<status>[A-Z]+)$")
CACHE_HIT = re.compile(r"^Task (?P<task>\S+) cache hit \(")
# Warnings about settings kfp.local ignores (the cluster uses them): kfp/local/orchestrator/task_executor.py,
# kfp/dsl/pipeline_task.py (set_retry and the like on a task called locally) and
# kfp/local/subprocess_task_handler.py (the image is not used by the SubprocessRunner).
KNOWN_NOOP_WARNINGS = (
    re.compile(r"have no effect in the current local runner and will be ignored"),
    re.compile(r"is not used by the current local runner and will be ignored"),
    re.compile(r"custom or non-Python base image"),
)
TAIL_LINES = 30


def task_line(task: str, status: str, seconds: float) -> str:
    """The console line of a finished task, e.g. ``  ingest-merge            SUCCESS   0.3 min``."""
    return f"  {task:<22}  {status:<7} {seconds / 60:5.1f} min"


class _Run:
    """One execution of a task: its name, start time and last lines."""

    def __init__(self, task: str, started: float, tail: int):
        self.task = task
        self.started = started
        self.lines: collections.deque[str] = collections.deque(maxlen=tail)


class _Sink:
    """Where the captured streams and log records go: the log file, per-thread lines, task events."""

    def __init__(self, file: io.TextIOBase, log: Callable[[str], None], tail: int):
        self.file = file
        self.log = log
        self.tail = tail
        self.lock = threading.RLock()
        self.partial: dict[int, str] = {}  # thread -> text after its last newline
        self.open: dict[int, _Run] = {}  # thread -> the task it runs
        self.failed: list[_Run] = []
        self.last: collections.deque[str] = collections.deque(maxlen=tail)  # of the whole log
        self.console = threading.local()  # .active: this thread is calling ``log``

    def write(self, text: str) -> None:
        """Take text written by any thread; complete lines go to the file."""
        ident = threading.get_ident()
        with self.lock:
            text = self.partial.pop(ident, "") + text
            *lines, rest = text.split("\n")
            if rest:
                self.partial[ident] = rest
            for line in lines:
                self._line(ident, line)

    def _line(self, ident: int, line: str) -> None:
        line = ANSI.sub("", line).rstrip("\r")
        self.file.write(line + "\n")
        self.last.append(line)
        run = self.open.get(ident)
        if run is not None:
            run.lines.append(line)

    def flush(self) -> None:
        """Write out the unfinished lines and flush the file."""
        with self.lock:
            for ident, rest in list(self.partial.items()):
                self._line(ident, rest)
            self.partial.clear()
            self.file.flush()

    def say(self, line: str) -> None:
        """Give ``line`` to ``log``, whose writes to the swapped streams go to the real console."""
        with self.lock:
            self.console.active = True
            try:
                self.log(line)
            finally:
                self.console.active = False

    def event(self, record: logging.LogRecord) -> None:
        """Open or close a task run from one of kfp.local's records."""
        message = ANSI.sub("", record.getMessage())
        if match := EXECUTING.match(message):
            with self.lock:
                self.open[threading.get_ident()] = _Run(match["task"], record.created, self.tail)
        elif match := FINISHED.match(message):
            with self.lock:
                run = self.open.pop(threading.get_ident(), None) or _Run(match["task"], record.created, self.tail)
                if match["status"] != "SUCCESS":
                    self.failed.append(run)
            self.say(task_line(run.task, match["status"], record.created - run.started))
        elif match := CACHE_HIT.match(message):
            self.say(task_line(match["task"], "CACHED", 0.0))

    def close_open(self) -> None:
        """Report the runs still open (the run was interrupted) as failed."""
        with self.lock:
            runs, self.open = list(self.open.values()), {}
        for run in runs:
            self.failed.append(run)
            self.say(task_line(run.task, "FAILURE", time.time() - run.started))

    def report_failures(self, log_path: Path) -> None:
        """The last lines of each failed task (or of the whole log), then where the full log is."""
        for run in self.failed or [None]:
            lines = _trimmed(run.lines if run is not None else self.last)
            what = f"task {run.task}" if run is not None else "the log"
            self.say(f"--- last {len(lines)} lines of {what} ---")
            for line in lines:
                self.say(f"  | {line}")
        self.say(f"--- full log: {log_path}")


def _trimmed(lines: Iterable[str]) -> list[str]:
    """``lines`` without the blank ones at either end nor their common indent."""
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return textwrap.dedent("\n".join(lines)).splitlines()  # kfp.local indents a task's lines


class _Stream(io.TextIOBase):
    """Stands for ``sys.stdout``/``sys.stderr``: text goes to the sink, or to the console inside ``log``."""

    def __init__(self, sink: _Sink, console: io.TextIOBase):
        self._sink = sink
        self._console = console

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if getattr(self._sink.console, "active", False):
            return self._console.write(text)
        self._sink.write(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._sink.console, "active", False):
            self._console.flush()


class _Events(logging.Filter):
    """A root-logger filter that reads kfp.local's task events and lets every record through."""

    def __init__(self, sink: _Sink):
        super().__init__()
        self._sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        self._sink.event(record)
        return True


@contextlib.contextmanager
def quiet_kfp_local(log_path: str | Path, log: Callable[[str], None] = print, *, tail: int = TAIL_LINES) -> Iterator[None]:
    """Run kfp.local inside: its output goes to ``log_path``, ``log`` gets its path and one line per finished task.

    Everything written to ``sys.stdout``/``sys.stderr`` (kfp.local's prints and log records, the task
    subprocesses' output, warnings) goes to the log file (overwritten; ANSI colours removed). Warnings
    about settings kfp.local ignores stay there; any other warning also gives ``log`` one line. If a task
    fails or an exception leaves the block, ``log`` also gets the last ``tail`` lines of each failed task
    (or of the whole log) and the log path; the exception propagates. Every global swapped here
    (``sys.stdout``, ``sys.stderr``, ``builtins.print``, the root logger's handlers, level and filters,
    ``warnings.showwarning``) is restored on the way out.

    Args:
        log_path: The log file; its folder is created.
        log: Takes each console line (default ``print``, which writes to the real console from in here).
        tail: How many last lines of a failed task to show.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"kfp.local log: {log_path}")
    root = logging.getLogger()
    saved = (sys.stdout, sys.stderr, builtins.print, root.handlers[:], root.level, warnings.showwarning)
    with open(log_path, "w", encoding="utf-8", errors="replace", buffering=1) as file:  # line-buffered: tail -f
        sink = _Sink(file, log, tail)
        events = _Events(sink)

        def showwarning(message, category, filename, lineno, file=None, line=None):
            text = warnings.formatwarning(message, category, filename, lineno, line)
            sink.write(text if text.endswith("\n") else text + "\n")
            if not any(known.search(str(message)) for known in KNOWN_NOOP_WARNINGS):
                sink.say(f"warning: {category.__name__}: {message}")

        handler = logging.StreamHandler(_Stream(sink, saved[0]))
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s"))
        try:
            sys.stdout = _Stream(sink, saved[0])
            sys.stderr = _Stream(sink, saved[1])
            warnings.showwarning = showwarning
            # Records logged outside kfp's own logger context (its orchestrator's warnings) go to the file too.
            root.handlers[:] = [handler]
            root.setLevel(logging.INFO)
            root.addFilter(events)
            yield
        except BaseException:
            sink.flush()
            sink.close_open()
            sink.report_failures(log_path)
            raise
        else:
            sink.flush()
            if sink.failed:
                sink.report_failures(log_path)
        finally:
            sink.flush()
            root.removeFilter(events)
            root.handlers[:] = saved[3]
            root.setLevel(saved[4])
            warnings.showwarning = saved[5]
            sys.stdout, sys.stderr = saved[0], saved[1]
            # kfp.local indents print() while a task runs by swapping builtins.print; its parallel loop
            # iterations restore each other's wrappers, which can leave one installed.
            builtins.print = saved[2]

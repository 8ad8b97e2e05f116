"""Figures for reports, written to PNG bytes.

Drawn under matplotlib's default style: libraries such as nnU-Net change the global style when they
run in the same process.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def figure(nrows: int = 1, ncols: int = 1, **kwargs) -> Iterator[tuple]:
    """``(fig, axes)`` drawn under matplotlib's default style, closed on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        matplotlib.use("Agg")
        fig, axes = plt.subplots(nrows, ncols, **kwargs)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (tight layout)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()

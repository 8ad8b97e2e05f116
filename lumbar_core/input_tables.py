"""The dataset's CSV files, read and checked before any image is: every error names file, line and column.

A table that cannot be used (empty, unparsable, a required column missing, a value of the wrong type
or outside the vocabulary) is a :class:`InputTableError`, raised before ingest reads a single DICOM
file. What only spoils one row (a label coordinate that is NaN) is left to the caller to report.
Line numbers count the header as line 1, as an editor shows them.
"""

from __future__ import annotations

import pandas as pd

from lumbar_core import labels, store, vocab
from lumbar_core.errors import UserError

SERIES_COLUMNS = {"study_id": "int", "series_id": "int", "series_description": "str"}
COORDINATE_COLUMNS = {
    "study_id": "int",
    "series_id": "int",
    "instance_number": "int",
    "condition": "condition",
    "level": "level",
    "x": "float",
    "y": "float",
}


class InputTableError(UserError):
    """A dataset CSV that cannot be used; the message names the file, and the line and column where one is at fault."""


def read_table(uri: str, columns: dict[str, str]) -> pd.DataFrame | None:
    """``uri`` as a frame with ``columns`` checked and typed (``None`` when the file does not exist).

    Kinds: ``int`` (whole numbers, no blanks), ``float`` (numbers; blanks become NaN), ``str``,
    ``condition`` and ``level`` (Title Case names of the competition, e.g. ``L4/L5``).
    """
    if not store.exists(uri):
        return None
    try:
        frame = pd.read_csv(store.bytes_io(uri), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputTableError(f"{uri}: empty file; expected a header with {', '.join(columns)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputTableError(f"{uri}: not a readable CSV ({str(exc).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputTableError(f"{uri}: no column {', '.join(map(repr, missing))} (columns: {', '.join(map(str, frame.columns[:12]))})")
    for column, kind in columns.items():
        frame[column] = _typed(uri, frame[column].str.strip(), column, kind)
    return frame


def _typed(uri: str, text: pd.Series, column: str, kind: str) -> pd.Series:
    if kind == "str":
        return text
    if kind == "int":
        bad = ~text.str.fullmatch(r"[+-]?\d+")
        if bad.any():
            raise _bad_value(uri, text, bad, column, "is not a whole number")
        return text.astype("int64")
    if kind == "float":
        values = pd.to_numeric(text.replace("", "nan"), errors="coerce")
        bad = values.isna() & ~text.str.lower().isin(["", "nan"])
        if bad.any():
            raise _bad_value(uri, text, bad, column, "is not a number")
        return values.astype(float)
    names = vocab.CONDITION_TITLES if kind == "condition" else vocab.LEVEL_TITLES
    lookup = {title: name for name, title in names.items()}
    bad = ~text.isin(list(lookup))
    if bad.any():
        raise _bad_value(uri, text, bad, column, f"is not a {kind}; valid: {', '.join(lookup)}")
    return text.map(lookup)


def _bad_value(uri: str, text: pd.Series, bad: pd.Series, column: str, what: str) -> InputTableError:
    first = int(bad.to_numpy().nonzero()[0][0])
    more = int(bad.sum()) - 1
    return InputTableError(
        f"{uri} line {first + 2}, column {column}: {text.iloc[first]!r} {what}" + (f" (and {more} more rows)" if more else "")
    )


def read_series_descriptions(uri: str) -> pd.DataFrame | None:
    """``{split}_series_descriptions.csv``: study, series and description; a series listed twice is an error."""
    frame = read_table(uri, SERIES_COLUMNS)
    if frame is not None:
        _no_duplicates(uri, frame, ["study_id", "series_id"])
    return frame


def read_coordinates(uri: str) -> pd.DataFrame | None:
    """``train_label_coordinates.csv`` with condition and level in snake_case; x and y may be NaN (a row problem)."""
    frame = read_table(uri, COORDINATE_COLUMNS)
    if frame is not None:
        frame = frame.assign(line=frame.index + 2)
    return frame


def read_train(uri: str) -> pd.DataFrame | None:
    """``train.csv`` in long form (:func:`lumbar_core.labels.from_wide`); a bad study id names its line."""
    frame = read_table(uri, {"study_id": "int"})
    if frame is None:
        return None
    frame = frame.mask(frame == "")
    return labels.from_wide(frame, source=uri)


def _no_duplicates(uri: str, frame: pd.DataFrame, key: list[str]) -> None:
    dup = frame.duplicated(key, keep="first")
    if dup.any():
        first = int(dup.to_numpy().nonzero()[0][0])
        values = ", ".join(f"{k}={frame[k].iloc[first]}" for k in key)
        raise InputTableError(f"{uri} line {first + 2}: {values} is listed twice")

"""Severity labels in one long form, from ``train.csv`` (wide) or a long table.

The long form has one row per labelled target: ``row_id, study_id, condition, level, group,
severity`` with ``severity`` the class index (0 Normal/Mild, 1 Moderate, 2 Severe). Empty cells
(targets the readers did not grade) are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.errors import UserError

LONG_COLUMNS = ["row_id", "study_id", "condition", "level", "group", "severity"]


class LabelError(UserError):
    """A label table that cannot be read; the message names the column, study or row at fault."""


def _severity_codes(values: pd.Series, where: pd.Series, what: str) -> pd.Series:
    """Map severity names to 0/1/2 (missing stays NA); unknown names are an error naming the rows."""
    mapping = {name: i for i, name in enumerate(vocab.SEVERITIES)}
    text = values.astype("string").str.strip()
    codes = text.map(mapping)
    bad = text.notna() & (text != "") & codes.isna()
    if bad.any():
        shown = ", ".join(f"{w}={v!r}" for w, v in zip(where[bad][:10], text[bad][:10]))
        raise LabelError(f"{what}: unknown severity values ({shown}); valid: {', '.join(vocab.SEVERITIES)}")
    return codes


def from_wide(df: pd.DataFrame, *, source: str = "train.csv") -> pd.DataFrame:
    """Long labels from a ``train.csv``-shaped table (``study_id`` + 25 target columns)."""
    if "study_id" not in df.columns:
        raise LabelError(f"{source}: no 'study_id' column (columns: {', '.join(map(str, df.columns[:10]))})")
    wanted = vocab.target_columns()
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise LabelError(f"{source}: missing target columns {', '.join(missing)}")
    if df["study_id"].duplicated().any():
        dups = df.loc[df["study_id"].duplicated(), "study_id"].tolist()[:10]
        raise LabelError(f"{source}: duplicate study_id {dups}")
    long = df.melt(id_vars="study_id", value_vars=wanted, var_name="column", value_name="label")
    long["study_id"] = long["study_id"].astype("int64")
    where = long["study_id"].astype(str) + ":" + long["column"]
    long["severity"] = _severity_codes(long["label"], where, source)
    long = long[long["severity"].notna()].copy()
    long["level"] = long["column"].str[-5:]
    long["condition"] = long["column"].str[:-6]
    return _finish(long)


def from_long(df: pd.DataFrame, *, source: str = "labels") -> pd.DataFrame:
    """Long labels from ``row_id`` with ``severity`` names, or one-hot severity columns."""
    if "row_id" not in df.columns:
        raise LabelError(f"{source}: a long label table needs a 'row_id' column")
    out = pd.DataFrame({"row_id": df["row_id"].astype(str)})
    if "severity" in df.columns:
        out["severity"] = _severity_codes(df["severity"], out["row_id"], source)
    elif all(c in df.columns for c in vocab.SEVERITY_COLUMNS):
        onehot = df[list(vocab.SEVERITY_COLUMNS)].to_numpy(dtype=float)
        valid = np.isclose(onehot.sum(axis=1), 1) & np.isin(onehot, (0.0, 1.0)).all(axis=1)
        if not valid.all():
            raise LabelError(f"{source}: rows that are not one-hot: {out['row_id'][~valid].tolist()[:10]}")
        out["severity"] = onehot.argmax(axis=1)
    else:
        raise LabelError(f"{source}: needs a 'severity' column or the columns {', '.join(vocab.SEVERITY_COLUMNS)}")
    out = out[out["severity"].notna()].copy()
    try:
        targets = [vocab.parse_row_id(r) for r in out["row_id"]]
    except vocab.VocabularyError as exc:
        raise LabelError(f"{source}: {exc}") from None
    out["study_id"] = [t.study_id for t in targets]
    out["condition"] = [t.condition for t in targets]
    out["level"] = [t.level for t in targets]
    if out["row_id"].duplicated().any():
        raise LabelError(f"{source}: duplicate row_id {out.loc[out['row_id'].duplicated(), 'row_id'].tolist()[:10]}")
    return _finish(out)


def _finish(long: pd.DataFrame) -> pd.DataFrame:
    long["row_id"] = [vocab.row_id(s, c, lv) for s, c, lv in zip(long["study_id"], long["condition"], long["level"])]
    long["group"] = long["condition"].map(vocab.CONDITION_GROUP)
    long["severity"] = long["severity"].astype("int64")
    return long[LONG_COLUMNS].sort_values("row_id").reset_index(drop=True)


def read_labels(table: pd.DataFrame, *, source: str = "labels") -> pd.DataFrame:
    """Long labels from either form, told apart by their columns."""
    if "row_id" in table.columns:
        return from_long(table, source=source)
    return from_wide(table, source=source)


def to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """The ``train.csv`` form of long labels (empty cells where a target has no label)."""
    names = np.array(vocab.SEVERITIES, dtype=object)
    frame = long.assign(column=long["condition"] + "_" + long["level"], label=names[long["severity"].to_numpy()])
    wide = frame.pivot(index="study_id", columns="column", values="label")
    wide = wide.reindex(columns=vocab.target_columns())
    wide.columns.name = None
    return wide.reset_index()

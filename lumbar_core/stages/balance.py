"""balance (cpu): the class census and a training case list in which no class is missing or rare.

Reads disc-label's ``regions.parquet`` (nnU-Net classes: family x level x severity) and ingest's
labels (all conditions, for the census). Counts examples per (condition, level, severity) and per
nnU-Net class; oversamples cases (multiplicity recorded) until every class present has at least
``min_examples``. A class with no example at all is the "nan pseudo Dice" trap: nnU-Net cannot
learn it, so the stage fails with an error listing every such class, unless ``allow_missing``,
which records them in the census instead.

Writes under ``{run}/balance/``: ``census.parquet`` (condition, level, severity, labels, regions),
``classes.parquet`` (family, class, level, severity, cases before and after), ``balanced.parquet``
(case_id, family, multiplicity), ``census.json`` (missing classes, totals) and ``prior.json`` (the
per condition x level severity prior of the training labels, the fallback of predict and the
baseline of score).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lumbar_core import vocab
from lumbar_core.classes import CLASS_COUNT, FAMILIES, class_title, level_severity_of
from lumbar_core.errors import UserError
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.params import Params
from lumbar_core.prior import prior_table

STAGE = "balance"
MAX_MULTIPLICITY = 50


class MissingClassesError(UserError):
    """Classes with no example at all; the message lists every one and what to do."""


@dataclass(frozen=True)
class BalanceParams(Params):
    """Parameters of balance.

    Attributes:
        min_examples: every class present is oversampled to at least this many case appearances.
        allow_missing: record classes without any example instead of failing.
    """

    min_examples: int = 5
    allow_missing: bool = False


def census(labels: pd.DataFrame, regions: pd.DataFrame) -> pd.DataFrame:
    """Labels and regions per (condition, level, severity), every combination listed."""
    full = pd.MultiIndex.from_product([vocab.CONDITIONS, vocab.LEVELS, range(3)], names=["condition", "level", "severity"])
    lab = labels.groupby(["condition", "level", "severity"]).size() if not labels.empty else pd.Series(dtype=int)
    reg = regions.groupby(["condition", "level", "severity"]).size() if not regions.empty else pd.Series(dtype=int)
    table = pd.DataFrame({"labels": lab.reindex(full, fill_value=0), "regions": reg.reindex(full, fill_value=0)}).reset_index()
    table["severity_name"] = [vocab.SEVERITIES[s] for s in table["severity"]]
    return table


def oversample(regions: pd.DataFrame, min_examples: int) -> tuple[dict[str, int], pd.DataFrame]:
    """Case multiplicities so each present class appears in at least ``min_examples`` case copies.

    Returns (case_id -> multiplicity, per-class table with counts before and after).
    """
    multiplicity = {c: 1 for c in regions["case_id"].unique()}
    cases_of = regions.groupby(["family", "class"])["case_id"].apply(lambda s: sorted(set(s))).to_dict()

    def count(key: tuple[str, int]) -> int:
        return sum(multiplicity[c] for c in cases_of[key])

    before = {key: len(cases) for key, cases in cases_of.items()}
    for key in sorted(cases_of, key=lambda k: before[k]):
        cases = cases_of[key]
        i = 0
        while count(key) < min_examples and any(multiplicity[c] < MAX_MULTIPLICITY for c in cases):
            case = cases[i % len(cases)]
            if multiplicity[case] < MAX_MULTIPLICITY:
                multiplicity[case] += 1
            i += 1
    rows = []
    for family, cls in sorted(cases_of):
        level, severity = level_severity_of(cls)
        rows.append(
            {
                "family": family,
                "class": cls,
                "level": level,
                "severity": severity,
                "cases": before[(family, cls)],
                "balanced": count((family, cls)),
            }
        )
    return multiplicity, pd.DataFrame(rows)


def run(*, run_uri: str, params: BalanceParams) -> Manifest:
    """Count, check and oversample the disc-label cases."""
    labels = IngestedData.open(run_uri).table("labels")
    disc = StageInput.open(run_uri, "disc-label")
    regions = disc.read_table("regions.parquet")
    table = census(labels, regions)
    present = set(zip(regions["family"], regions["class"]))
    missing = [class_title(family, cls) for family in FAMILIES for cls in range(1, CLASS_COUNT + 1) if (family, cls) not in present]
    if missing and not params.allow_missing:
        raise MissingClassesError(
            f"{len(missing)} nnU-Net classes have no example (their pseudo Dice would be nan): {'; '.join(missing)}. "
            "Add studies, or pass allow_missing (--allow-missing true) to train without them."
        )
    multiplicity, classes = oversample(regions, params.min_examples)
    family_of = regions.drop_duplicates("case_id").set_index("case_id")["family"]
    balanced = pd.DataFrame([{"case_id": c, "family": family_of[c], "multiplicity": m} for c, m in sorted(multiplicity.items())])
    out = StageOutput(run_uri, STAGE)
    for name, frame in (("census.parquet", table), ("classes.parquet", classes), ("balanced.parquet", balanced)):
        out.write_table(name, frame)
    summary = {
        "missing_classes": missing,
        "cases": len(balanced),
        "case_copies": int(balanced["multiplicity"].sum()),
        "min_examples": params.min_examples,
        "rarest_class_after": int(classes["balanced"].min()) if len(classes) else 0,
    }
    out.write_json("census.json", summary)
    out.write_json("prior.json", {f"{c}|{lv}": p.tolist() for (c, lv), p in prior_table(labels).items()})
    return out.commit(
        params=params.to_dict(), metrics={k: v for k, v in summary.items() if k != "missing_classes"} | {"missing": len(missing)}
    )

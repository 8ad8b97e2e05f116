"""The ``lumbar`` command line: turns flags into calls of the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd


def _cmd_score(args: argparse.Namespace) -> int:
    from lumbar_core import labels, score, store

    truth = labels.read_labels(pd.read_csv(store.bytes_io(args.truth)), source=args.truth)
    from lumbar_core.submission import read_submission

    table = score.score(truth, read_submission(args.submission))
    if args.json:
        print(json.dumps(table.terms(), sort_keys=False))
    else:
        print(table.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb that works today."""
    from lumbar_core import __version__

    parser = argparse.ArgumentParser(prog="lumbar", description="Lumbar spine degeneration grading (RSNA 2024 LSDC).")
    parser.add_argument("--version", action="version", version=f"lumbar {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("score", help="score a submission against labels (train.csv or long form)")
    p.add_argument("--truth", required=True, help="train.csv (wide) or a long table with row_id (path or URI)")
    p.add_argument("--submission", required=True, help="submission CSV: row_id,normal_mild,moderate,severe")
    p.add_argument("--json", action="store_true", help="print the terms and score as one JSON object")
    p.set_defaults(func=_cmd_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lumbar`` console script."""
    from lumbar_core.labels import LabelError
    from lumbar_core.store import StoreError
    from lumbar_core.submission import SubmissionError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (LabelError, SubmissionError, StoreError, FileNotFoundError) as exc:
        print(f"lumbar {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

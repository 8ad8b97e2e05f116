"""score (cpu): the Kaggle submission, the score table, and an HTML report.

Reads predict (``predictions.parquet``, and ``readings.parquet`` for each model's score alone), the
labels of the predicted studies (``ingest_stage``, if they have any) and the model bundle
(``models_uri``, default this run's): its prior, the baseline, and its training figures for the
report.

Writes under ``{run}/score/`` (and publishes to ``{run}/score/`` itself): ``submission.csv`` (25 rows
per study, rows normalised, the (1, 2, 4) reweighting on unless ``reweight`` is false),
``metrics.json`` (the four terms and the score on the labelled studies, and beside them the same for
the (1, 2, 4)-reweighted prior of the training studies and, under ``alone``, for each kind of model
weighed alone against the prior) and ``report.html`` (score table, confusion
matrices, calibration plots, prediction sources, localisation and segmentation overlays), and where
there are labels ``confusion.json`` (true x predicted severity over every labelled row, for UIs).
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData
from lumbar_core.localisation import errors_against, summary
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.model_bundle import open_bundle
from lumbar_core.params import Params
from lumbar_core.plots import figure, png_bytes
from lumbar_core.prediction import denominator_of, fuse, source_name
from lumbar_core.prior import prior_from_json, prior_submission
from lumbar_core.score import TERMS, ScoreTable, score
from lumbar_core.stages.crop_train import CropTrainParams
from lumbar_core.submission import make_submission, validate_submission

STAGE = "score"


@dataclass(frozen=True)
class ScoreParams(Params):
    """Parameters of score.

    Attributes:
        ingest_stage: the ingest stage of the predicted studies (their labels, if any, are the truth).
        models_uri: the model bundle whose prior is the baseline (its URI or a training run holding one; '' = this run's).
        reweight: apply the (1, 2, 4) reweighting to the submission.
    """

    ingest_stage: str = "ingest"
    models_uri: str = ""
    reweight: bool = True


def _png(fig) -> str:
    return base64.b64encode(png_bytes(fig)).decode()


def confusion_figure(truth: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> str:
    """Confusion matrices (truth x argmax) per condition group, as a base64 PNG."""
    with figure(1, 3, figsize=(11, 3.4)) as (fig, axes):
        _draw_confusion(axes, truth, probs, groups)
        return _png(fig)


def _draw_confusion(axes, truth: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> None:
    for ax, group in zip(axes, vocab.GROUPS):
        m = groups == group
        matrix = np.zeros((3, 3), dtype=int)
        for t, p in zip(truth[m], probs[m].argmax(axis=1)):
            matrix[t, p] += 1
        ax.imshow(matrix, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(3), ["N/M", "Mod", "Sev"])
        ax.set_yticks(range(3), ["N/M", "Mod", "Sev"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("truth")
        ax.set_title(group)


def pooled_confusion(truth: np.ndarray, probs: np.ndarray) -> dict:
    """Counts of (true severity, argmax severity) over every labelled row: ``categories`` and ``matrix``."""
    k = len(vocab.SEVERITY_COLUMNS)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (truth.astype(int), probs.argmax(axis=1)), 1)
    return {"categories": list(vocab.SEVERITY_COLUMNS), "matrix": matrix.tolist()}


def calibration_figure(truth: np.ndarray, probs: np.ndarray, groups: np.ndarray, bins: int = 5) -> str:
    """Reliability diagrams (predicted probability vs observed frequency, each severity) per group."""
    with figure(1, 3, figsize=(11, 3.4)) as (fig, axes):
        _draw_calibration(axes, truth, probs, groups, bins)
        return _png(fig)


def _draw_calibration(axes, truth: np.ndarray, probs: np.ndarray, groups: np.ndarray, bins: int) -> None:
    edges = np.linspace(0, 1, bins + 1)
    for ax, group in zip(axes, vocab.GROUPS):
        m = groups == group
        for c, name in enumerate(vocab.SEVERITY_COLUMNS):
            p, hit = probs[m, c], truth[m] == c
            which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
            xs = [p[which == b].mean() for b in range(bins) if (which == b).any()]
            ys = [hit[which == b].mean() for b in range(bins) if (which == b).any()]
            ax.plot(xs, ys, "o-", label=name)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(group)
        ax.legend(fontsize=7)


MODEL_KINDS = {"nnunet": "nnU-Net alone", "densenet": "DenseNet alone", "crop": "crop classifier alone"}


def alone_predictions(predictions: pd.DataFrame, readings: pd.DataFrame, meta, prior: dict) -> dict[str, np.ndarray]:
    """Per kind of model, the probabilities of ``predictions``' rows had that model alone been weighed against the prior.

    Each reading is weighed by the model's own fit (``alone_tau``; the joint ``tau`` for older bundles);
    a cell the kind did not read keeps the prior.
    """
    frequencies = {family: m.class_frequencies for family, m in meta.nnunet.items()}
    alone = {
        model: (
            fitted.tau if fitted.alone_tau is None else fitted.alone_tau,
            fitted.floor if fitted.alone_floor is None else fitted.alone_floor,
        )
        for model, fitted in meta.calibration.items()
    }
    cells = {(int(r.study_id), r.condition, r.level): i for i, r in enumerate(predictions.itertuples())}
    base = np.stack([prior[(c, lv)] for c, lv in zip(predictions["condition"], predictions["level"])])
    found: dict[tuple[str, int], dict[str, np.ndarray]] = defaultdict(dict)  # (kind, row) -> model -> raw distribution
    for r in readings.itertuples():
        i = cells.get((int(r.study_id), r.condition, r.level))
        if r.model in alone and i is not None:
            found[(source_name(r.model), i)][r.model] = np.array([r.normal_mild, r.moderate, r.severe])
    out = {kind: base.copy() for kind in MODEL_KINDS}
    for (kind, i), raw in found.items():
        condition, level = predictions["condition"].iat[i], predictions["level"].iat[i]
        denominators = {m: denominator_of(m, condition, level, prior, frequencies) for m in raw}
        out[kind][i] = fuse(base[i], raw, denominators, alone)
    return out


def _table_html(model: ScoreTable | None, prior: ScoreTable | None, alone: dict[str, ScoreTable] | None = None) -> str:
    alone = alone or {}
    head = "<tr><th>term</th><th>model (fused)</th><th>prior (1,2,4)</th>" + "".join(f"<th>{MODEL_KINDS[k]}</th>" for k in alone) + "</tr>"
    rows = []
    for term in (*TERMS, "score"):
        cells = [model, prior, *alone.values()]
        rows.append(f"<tr><td>{term}</td>" + "".join(f"<td>{getattr(c, term):.4f}</td>" if c else "<td>-</td>" for c in cells) + "</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def _image(data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f"<figure><img src='data:image/png;base64,{encoded}'><figcaption>{html.escape(caption)}</figcaption></figure>"


FIGURE_CAPTIONS = {
    "figures/localisation.png": "vertebra U-Net classes and disc centres (localisation, training studies)",
    "figures/regions.png": "disc-label regions: the nnU-Net training classes (segmentation)",
}


def _overlays(bundle: StageInput) -> list[str]:
    return [_image(bundle.read_bytes(path), caption) for path, caption in FIGURE_CAPTIONS.items() if path in bundle.manifest.files]


VIEW_STUDIES = 3
_VIEW_CONDITIONS = (
    ("spinal_canal_stenosis", "spinal canal (T2)"),
    ("left_neural_foraminal_narrowing", "left foramen (T1)"),
    ("right_neural_foraminal_narrowing", "right foramen (T1, mirrored)"),
    ("left_subarticular_stenosis", "left recess (axial T2)"),
    ("right_subarticular_stenosis", "right recess (axial, mirrored)"),
)


def study_views(
    data: IngestedData,
    levels: pd.DataFrame,
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    crop: dict,
    axial: dict,
    offset_mm: float,
) -> list[str]:
    """For the first few studies, each level's sagittal and axial crops (middle slice), the predicted probabilities and the label."""
    from lumbar_core.axial import study_side_crops_of
    from lumbar_core.sagittal_crops import study_crops_of

    truth = {(int(r.study_id), r.condition, r.level): int(r.severity) for r in labels.itertuples()} if not labels.empty else {}
    probs = predictions.set_index(["study_id", "condition", "level"])[list(vocab.SEVERITY_COLUMNS)]
    names = ("N/M", "Mod", "Sev")
    out = []
    for study in sorted(levels["study_id"].unique())[:VIEW_STUDIES]:
        crops = study_crops_of(data, levels, int(study), crop, offset_mm)
        sides = study_side_crops_of(data, levels, int(study), axial)
        crops.update({(f"{side}_subarticular_stenosis", level): c for (side, level), c in sides.items()})
        with figure(len(vocab.LEVELS), len(_VIEW_CONDITIONS), figsize=(13, 13)) as (fig, axes):
            for i, level in enumerate(vocab.LEVELS):
                for j, (condition, title) in enumerate(_VIEW_CONDITIONS):
                    ax = axes[i, j]
                    ax.axis("off")
                    image = crops.get((condition, level))
                    if image is not None:
                        ax.imshow(image[len(image) // 2], cmap="gray", vmin=0, vmax=1.2)
                    p = probs.loc[(study, condition, level)].to_numpy() if (study, condition, level) in probs.index else None
                    label = truth.get((int(study), condition, level))
                    text = " ".join(f"{n} {v:.2f}" for n, v in zip(names, p)) if p is not None else "no prediction"
                    text += f"\nlabel: {names[label] if label is not None else '-'}"
                    ax.set_title(
                        f"{vocab.LEVEL_TITLES[level]} {title}\n{text}" if i == 0 else f"{vocab.LEVEL_TITLES[level]}\n{text}", fontsize=7
                    )
            fig.tight_layout()
            out.append(_image(png_bytes(fig), f"study {study}: crops at its levels, predicted probabilities and the label"))
    return out


def localisation_by_source(levels: pd.DataFrame, coords: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per source of the levels: share of labelled spinal canal points with a level within 5 mm, nearest the right level."""
    if coords.empty or levels.empty:
        return {}
    spinal = coords[coords["condition"] == "spinal_canal_stenosis"]
    out = {}
    for source, rows in levels[levels["source"] != "missing"].groupby("source"):
        errors, right, labelled = [], [], 0
        for study, mine in spinal[spinal["study_id"].isin(rows["study_id"])].groupby("study_id"):
            points = {str(lv): r[["world_x", "world_y", "world_z"]].to_numpy().mean(axis=0) for lv, r in mine.groupby("level")}
            kept = rows[rows["study_id"] == study]
            found = {r.level: np.array([r.canal_x, r.canal_y, r.canal_z]) for r in kept.itertuples()}
            e, r = errors_against(found, points)
            errors, right, labelled = errors + e, right + r, labelled + len(points)
        out[str(source)] = summary(errors, right, labelled)
    return out


def qa_table(levels: pd.DataFrame, problems: pd.DataFrame) -> pd.DataFrame:
    """One row per study: the levels kept and what level QA (or reading the study) refused."""
    if levels.empty:
        return pd.DataFrame()
    kept = levels[levels["source"] != "missing"].groupby("study_id")["level"].apply(lambda s: ", ".join(vocab.LEVEL_TITLES[x] for x in s))
    rows = []
    for study in sorted(levels["study_id"].unique()):
        mine = problems[problems["study_id"] == study] if not problems.empty else problems
        rows.append(
            {
                "study": int(study),
                "levels kept": kept.get(study, ""),
                "problems": "; ".join(m.split(": ", 1)[-1] for m in mine["message"]) if len(mine) else "",
            }
        )
    return pd.DataFrame(rows)


def _localisation_html(found: dict[str, dict[str, float]], meta) -> str:
    held = meta.validation.get("calibrate", {}).get("localisation", {})
    parts = []
    if found:
        table = pd.DataFrame(found).T[["labelled_levels", "share_within_5mm", "share_right_level", "median_error_mm"]]
        parts.append("<p>On these studies, against their labelled spinal canal points:</p>" + table.round(3).to_html())
    if held:
        table = pd.DataFrame(held).T
        parts.append("<p>On the training run's held-out studies (calibrate), per source:</p>" + table.round(3).to_html())
    return "".join(parts) or "<p>No labelled points to measure the levels against.</p>"


def run(*, run_uri: str, params: ScoreParams) -> Manifest:
    """Write the submission, the metrics and the report."""
    predict = StageInput.open(run_uri, "predict")
    predictions = predict.read_table("predictions.parquet")
    bundle, meta = open_bundle(params.models_uri, run_uri)
    prior = prior_from_json(bundle.read_json(meta.prior))
    row_ids = [vocab.row_id(s, c, lv) for s, c, lv in zip(predictions["study_id"], predictions["condition"], predictions["level"])]
    probs = predictions[list(vocab.SEVERITY_COLUMNS)].to_numpy(dtype=float)
    submission = make_submission(row_ids, probs, reweighted=params.reweight)
    studies = sorted(predictions["study_id"].unique())
    validate_submission(submission, study_ids=studies)
    labels = IngestedData.open(run_uri, params.ingest_stage).table("labels")
    labels = labels[labels["study_id"].isin(studies)] if not labels.empty else labels
    model_table = prior_table_score = confusion = None
    alone_tables: dict[str, ScoreTable] = {}
    metrics: dict = {"studies": len(studies), "labelled_rows": len(labels)}
    sections = []
    if not labels.empty:
        model_table = score(labels, submission)
        prior_table_score = score(labels, prior_submission(studies, prior, reweighted=True))
        metrics.update(model_table.terms())
        metrics["prior"] = prior_table_score.terms()
        if "readings.parquet" in predict.manifest.files:
            for kind, alone_probs in alone_predictions(predictions, predict.read_table("readings.parquet"), meta, prior).items():
                alone_tables[kind] = score(labels, make_submission(row_ids, alone_probs, reweighted=params.reweight))
            metrics["alone"] = {kind: table.terms() for kind, table in alone_tables.items()}
        plain = pd.DataFrame(probs, columns=list(vocab.SEVERITY_COLUMNS)).assign(row_id=row_ids).set_index("row_id")
        p = plain.loc[labels["row_id"]].to_numpy()
        p = p / p.sum(axis=1, keepdims=True)
        truth, groups = labels["severity"].to_numpy(), labels["group"].to_numpy()
        sections.append(
            "<h2>Confusion matrices (argmax of the unweighted probabilities)</h2>"
            + f"<img src='data:image/png;base64,{confusion_figure(truth, p, groups)}'>"
        )
        confusion = pooled_confusion(truth, p)
        sections.append("<h2>Calibration</h2>" + f"<img src='data:image/png;base64,{calibration_figure(truth, p, groups)}'>")
    levels = predict.read_table("levels.parquet")
    ingested = IngestedData.open(run_uri, params.ingest_stage)
    coords = ingested.table("coordinates")
    views = []
    if not levels.empty and "canal_x" in levels.columns:
        # a bundle without a crop classifier still shows its sagittal crops, cut as crop-train's defaults would
        crop_config = meta.crop.config if meta.crop else CropTrainParams().to_dict()
        read_params = predict.params.get("shards", [predict.params])[0]  # a merged predict keeps its shards' params
        offset = float(read_params.get("foramen_offset_mm", 16.0))
        views = study_views(ingested, levels, predictions, labels, crop_config, meta.densenet.config, offset)
    found = localisation_by_source(levels, coords)
    if found:
        metrics["localisation"] = found
    qa = qa_table(levels, predict.read_table("problems.parquet"))
    sources = predictions.groupby(["condition", "source"]).size().unstack(fill_value=0)
    metrics["sources"] = {str(k): int(v) for k, v in predictions["source"].value_counts().items()}
    body = [
        "<h1>Lumbar spine degeneration: score report</h1>",
        f"<p>{len(studies)} studies; {len(labels)} labelled rows; submission {'(1,2,4)-reweighted' if params.reweight else 'plain'}.</p>",
        "<h2>Score (lower is better)</h2>",
        _table_html(model_table, prior_table_score, alone_tables) if model_table else "<p>No labels for these studies: no score.</p>",
        *sections,
        "<h2>Per study: the crops at each level, the prediction and the label</h2>",
        *views,
        "<h2>Where each prediction came from</h2>",
        sources.to_html(),
        "<h2>Levels</h2>",
        _localisation_html(found, meta),
        "<h3>Level checks per study</h3>",
        qa.to_html(index=False) if not qa.empty else "<p>No study.</p>",
        "<h2>Localisation and segmentation</h2>",
        *_overlays(bundle),
    ]
    style = (
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}figure{display:inline-block}</style>"
    )
    head = f"<head><meta charset='utf-8'><title>lumbar score report</title>{style}</head>"
    report = f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>"
    out = StageOutput(run_uri, STAGE)
    out.write_text("submission.csv", submission.to_csv(index=False, float_format="%.6g"))
    out.write_json("metrics.json", metrics)
    if confusion is not None:
        out.write_json("confusion.json", confusion)
    out.write_text("report.html", report)
    metrics["bundle"] = meta.bundle_id
    manifest = out.commit(params=params.to_dict(), metrics={k: v for k, v in metrics.items() if not isinstance(v, dict)})
    for name in ("submission.csv", "metrics.json", "report.html"):
        out.publish(name)
    return manifest

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lumbar_core import store, vocab
from lumbar_core.cli import build_parser, main
from lumbar_core.submission import make_submission


def _files(tmp_path):
    wide = pd.DataFrame([{"study_id": s, **{c: "Normal/Mild" for c in vocab.target_columns()}} for s in (1, 2)])
    wide.loc[0, "spinal_canal_stenosis_l4_l5"] = "Severe"
    wide.to_csv(tmp_path / "train.csv", index=False)
    targets = [t for s in (1, 2) for t in vocab.study_targets(s)]
    make_submission([t.row_id for t in targets], np.full((50, 3), 1 / 3)).to_csv(tmp_path / "sub.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "sub.csv"


def test_score_json_contract(tmp_path, capsys):
    truth, sub = _files(tmp_path)
    assert main(["score", "--truth", str(truth), "--submission", str(sub), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["spinal", "foraminal", "subarticular", "any_severe_spinal", "score"]
    assert out["spinal"] == np.log(3)


def test_score_table_and_errors(tmp_path, capsys):
    truth, sub = _files(tmp_path)
    assert main(["score", "--truth", str(truth), "--submission", str(sub)]) == 0
    assert "any_severe_spinal" in capsys.readouterr().out
    pd.read_csv(sub).iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    assert main(["score", "--truth", str(truth), "--submission", str(tmp_path / "short.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing rows" in err and "1_left_neural_foraminal_narrowing_l1_l2" in err
    assert main(["score", "--truth", str(tmp_path / "none.csv"), "--submission", str(sub)]) == 2
    assert "none.csv" in capsys.readouterr().err


def test_help_lists_only_working_verbs():
    verbs = build_parser()._subparsers._group_actions[0].choices
    assert set(verbs) == {"compile", "prior", "run", "score", "stage", "submit", "synth"}
    result = subprocess.run([sys.executable, "-m", "lumbar_core.cli", "--help"], capture_output=True, text=True, check=True)
    assert "score" in result.stdout


def test_prior_verb_writes_a_valid_submission_that_beats_uniform(tmp_path, capsys):
    truth, uniform = _files(tmp_path)
    studies = tmp_path / "studies.csv"
    pd.DataFrame({"study_id": [1, 2, 2]}).to_csv(studies, index=False)
    out = tmp_path / "prior.csv"
    assert main(["prior", "--truth", str(truth), "--studies", str(studies), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 50
    capsys.readouterr()
    main(["score", "--truth", str(truth), "--submission", str(out), "--json"])
    prior_score = json.loads(capsys.readouterr().out)["score"]
    main(["score", "--truth", str(truth), "--submission", str(uniform), "--json"])
    assert prior_score < json.loads(capsys.readouterr().out)["score"]
    pd.DataFrame({"id": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["prior", "--truth", str(truth), "--studies", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    assert "no 'study_id' column" in capsys.readouterr().err


def test_user_error_is_one_line_naming_the_culprit_with_exit_2(tmp_path, capsys):
    truth, _ = _files(tmp_path)
    bad = tmp_path / "no_ids.csv"
    pd.DataFrame({"id": [1]}).to_csv(bad, index=False)
    args = ["prior", "--truth", str(truth), "--studies", str(bad), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"lumbar prior: error: {bad}: no 'study_id' column"
    assert "Traceback" not in err
    assert main(["synth", "--out", str(tmp_path / "d"), "--set", "novalue"]) == 2
    assert capsys.readouterr().err.strip() == "lumbar synth: error: --set takes key=value, got 'novalue'"


def test_error_classes_are_user_errors():
    from lumbar_core.errors import UserError
    from lumbar_core.labels import LabelError
    from lumbar_core.params import ParamsError
    from lumbar_core.submission import SubmissionError

    for cls in (LabelError, SubmissionError, ParamsError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)


def test_debug_shows_the_traceback(tmp_path):
    truth, _ = _files(tmp_path)
    missing = tmp_path / "missing.csv"
    cmd = [sys.executable, "-m", "lumbar_core.cli", "--debug", "score", "--truth", str(truth), "--submission", str(missing)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "missing.csv" in result.stderr
    with pytest.raises(store.ObjectNotFound, match="missing.csv"):
        main(["--debug", "score", "--truth", str(truth), "--submission", str(missing)])


def test_unexpected_exceptions_are_not_swallowed(tmp_path, monkeypatch):
    from lumbar_core import cli

    truth, sub = _files(tmp_path)

    def buggy(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli, "_cmd_score", buggy)
    with pytest.raises(KeyError, match="a bug"):
        main(["score", "--truth", str(truth), "--submission", str(sub)])

    def also_buggy(args):
        raise ValueError("a plain ValueError is a bug too")

    monkeypatch.setattr(cli, "_cmd_score", also_buggy)
    with pytest.raises(ValueError, match="a bug too"):
        main(["score", "--truth", str(truth), "--submission", str(sub)])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nnunet-train.epochz=3", "unknown parameter(s) epochz; valid: epochs"),
        ("vertebra-train.epochs=abc", "VertebraTrainParams.epochs: cannot use 'abc'"),
        ("run.sed=1", "unknown run setting 'sed'; valid: validation_fraction, seed"),
        ("nnunet.epochs=1", "unknown stage 'nnunet'"),
    ],
)
def test_run_settings_are_checked_before_anything_runs(tmp_path, capsys, setting, message):
    run = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "no-data"), "--run", str(run), "--set", setting]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists(), "nothing ran"

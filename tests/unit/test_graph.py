"""The pipelines as data: tasks wired by what their stages read, and the docs generated from it."""

from pathlib import Path

import pytest

from lumbar_core import graph

DOCS = Path(__file__).parents[2] / "docs" / "stages.md"


@pytest.mark.parametrize("name", sorted(graph.PIPELINES))
def test_every_read_is_written_by_an_earlier_task(name):
    graph.check(graph.PIPELINES[name])


def test_the_wiring_comes_from_the_reads():
    tasks = graph.TRAIN
    by_name = {t.name: t for t in tasks}
    assert graph.upstream(by_name["nnunet-train"], tasks) == ["disc-label", "balance", "nnunet-prepare"]
    assert graph.upstream(by_name["predict"], tasks) == [graph.VALIDATION_INGEST, "bundle"]
    assert graph.upstream(by_name["score"], tasks) == [graph.VALIDATION_INGEST, "bundle", "predict"]
    inference = {t.name: t for t in graph.INFERENCE}
    assert graph.upstream(inference["predict"], graph.INFERENCE) == ["ingest"], "a given bundle is read elsewhere"


def test_a_task_reading_what_no_earlier_task_writes_is_refused():
    tasks = (graph.Task("predict", {"ingest_stage": "ingest", "models_uri": ""}),)
    with pytest.raises(graph.GraphError, match="reads stage 'ingest'"):
        graph.check(tasks)
    ingest = graph.Task("ingest", {"name": "ingest"})
    with pytest.raises(graph.GraphError, match="two tasks write stage 'ingest'"):
        graph.check((ingest, ingest))


def test_unknown_pipeline_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid: train, inference"):
        graph.get_pipeline("serve")


def test_docs_stage_page_is_current():
    assert DOCS.read_text() == graph.stages_page(), "docs/stages.md is out of date: run make docs"

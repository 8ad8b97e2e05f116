"""train-inputs (cpu): a training run's inputs: the study split of ``train.csv`` and the SPIDER folder."""

from typing import NamedTuple

from kfp import dsl

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train_inputs(data_uri: str, spider_uri: str, profile: str, overrides: dict) -> NamedTuple(
    "TrainInputs", training=list, validation=list, spider_uri=str
):
    """Split ``{data_uri}/train.csv``'s studies as ``lumbar run`` does; the SPIDER folder is ``spider_uri`` or ``{data_uri}/spider``."""
    from collections import namedtuple

    from lumbar_core.pipeline import spider_root
    from lumbar_core.task import training_split

    training, validation = training_split(data_uri, profile, overrides)
    return namedtuple("TrainInputs", ["training", "validation", "spider_uri"])(training, validation, spider_root(data_uri, spider_uri))

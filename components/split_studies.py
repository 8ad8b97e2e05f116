"""split-studies (cpu): the training and validation studies of a dataset, by a hash of each study id."""

from typing import NamedTuple

from kfp import dsl

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def split_studies(data_uri: str, profile: str, overrides: dict) -> NamedTuple("Split", training=list, validation=list):
    """Split ``{data_uri}/train.csv``'s studies as ``lumbar run`` does (profile's validation_fraction, seed)."""
    from collections import namedtuple

    from lumbar_core.task import training_split

    training, validation = training_split(data_uri, profile, overrides)
    return namedtuple("Split", ["training", "validation"])(training, validation)

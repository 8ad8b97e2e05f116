"""One thin KFP component per stage; each calls ``lumbar_core.task.run_task`` and nothing else.

:data:`COMPONENTS` maps a stage name (as in ``lumbar_core.stages.STAGES``) to its component, plus the
two helpers ``train-inputs`` and ``fan-out``. :func:`with_image` rebuilds one for a given image.
"""

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from components.balance import balance
from components.bundle import bundle
from components.calibrate import calibrate
from components.crop_train import crop_train
from components.densenet_train import densenet_train
from components.disc_label import disc_label
from components.fan_out import fan_out
from components.ingest import ingest
from components.ingest_merge import ingest_merge
from components.level_train import level_train
from components.nnunet_prepare import nnunet_prepare
from components.nnunet_train import nnunet_train
from components.predict import predict
from components.predict_merge import predict_merge
from components.score import score
from components.train_inputs import train_inputs
from components.vertebra_segment import vertebra_segment
from components.vertebra_train import vertebra_train

COMPONENTS: dict[str, PythonComponent] = {
    "train-inputs": train_inputs,
    "fan-out": fan_out,
    "ingest": ingest,
    "ingest-merge": ingest_merge,
    "vertebra-train": vertebra_train,
    "vertebra-segment": vertebra_segment,
    "disc-label": disc_label,
    "balance": balance,
    "nnunet-prepare": nnunet_prepare,
    "nnunet-train": nnunet_train,
    "densenet-train": densenet_train,
    "crop-train": crop_train,
    "level-train": level_train,
    "calibrate": calibrate,
    "bundle": bundle,
    "predict": predict,
    "predict-merge": predict_merge,
    "score": score,
}


def with_image(component: PythonComponent, image: str) -> PythonComponent:
    """The same component running in ``image`` (the project's image has kfp, so nothing is installed at run time)."""
    return dsl.component(component.python_func, base_image=image, install_kfp_package=False)


__all__ = ["COMPONENTS", "with_image"]

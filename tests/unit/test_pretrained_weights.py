"""Pretrained weights from a local file (U-Net encoder, DenseNet): RGB stems to one channel, torchvision's key names."""

import re

import pytest
import torch
import torchvision

from lumbar_core.models.densenet import build_densenet
from lumbar_core.models.unet import build_unet


def _published_names(state: dict) -> dict:
    """Key names as in torchvision's downloadable files (``norm.1``, not the module name ``norm1``)."""
    return {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    torch.manual_seed(0)
    state = torchvision.models.densenet121(weights=None).state_dict()  # 3 input channels, 1000 classes
    path = tmp_path_factory.mktemp("weights") / "densenet121.pth"
    torch.save(_published_names(state), path)
    return path, state


def test_pretrained_weights_load_with_a_one_channel_stem_and_a_new_head(imagenet_like):
    path, state = imagenet_like
    assert any(".norm.1." in k for k in torch.load(path, weights_only=True)), "the file uses the published names"
    model = build_densenet("densenet121", str(path))
    loaded = model.state_dict()
    torch.testing.assert_close(loaded["features.conv0.weight"], state["features.conv0.weight"].sum(dim=1, keepdim=True))
    key = "features.denseblock3.denselayer7.norm1.running_var"
    torch.testing.assert_close(loaded[key], state[key])
    assert loaded["classifier.weight"].shape == (3, 1024)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 3)
    three = build_densenet("densenet121", str(path), slices=3).state_dict()["features.conv0.weight"]
    assert three.shape[1] == 3  # one filter per slice, a third of the one-channel filter each
    torch.testing.assert_close(three.sum(dim=1, keepdim=True), loaded["features.conv0.weight"])


def test_weights_of_another_densenet_or_no_file_are_refused(imagenet_like, tmp_path):
    path, _ = imagenet_like
    with pytest.raises(ValueError, match="densenet121.pth: not weights of this DenseNet"):
        build_densenet("densenet169", str(path))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_densenet("densenet121", str(tmp_path / "absent.pth"))
    assert build_densenet("densenet121").features.conv0.in_channels == 1


def test_unet_encoder_weights_load_with_a_one_channel_stem(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()  # an ImageNet-format ResNet file
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    encoder = build_unet("resnet18", 3, str(path)).encoder.state_dict()
    torch.testing.assert_close(encoder["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(encoder["layer3.1.bn2.running_mean"], state["layer3.1.bn2.running_mean"])
    with pytest.raises(FileNotFoundError, match="encoder weights .* never downloaded"):
        build_unet("resnet18", 3, str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="encoder weights lack"):
        build_unet("resnet34", 3, str(path))

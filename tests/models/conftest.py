import pytest
import torch

import msgf


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_run_single_threaded(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


@pytest.fixture(scope="module")
def resnet_model():
    """ResNet-18 MS-GFNet small enough for CPU tests: 48 px patches give 2x2 maps, 32 px 1x1."""
    torch.manual_seed(0)
    return msgf.build_model("resnet18", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3).eval()


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (5, 70, 90, 3), dtype=torch.uint8, generator=gen)

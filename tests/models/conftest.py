import pytest
import torch

import msgf


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny (32-64 px), so a second thread gains nothing, while OpenMP threads
    that spin-wait next to another busy process on this 2-core machine slowed a forward pass
    from 3 ms to 1.5 s. Restored afterwards: other test directories keep their setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet_model():
    """ResNet-18 MS-GFNet small enough for CPU tests: 48 px patches give 2x2 maps, 32 px 1x1."""
    torch.manual_seed(0)
    return msgf.build_model("resnet18", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3).eval()


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (5, 70, 90, 3), dtype=torch.uint8, generator=gen)

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _flush_denormals():
    # Freshly initialised encoders produce denormal activations that make CPU convolutions
    # ~100x slower; training does the same (msgf.train.loop).
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)

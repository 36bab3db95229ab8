import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _flush_denormals():
    # Freshly initialised encoders produce denormal activations that make CPU convolutions
    # ~100x slower; training does the same (msgf.train.loop). Per module, so that the
    # process-wide flag does not leak into other folders' tests (hypothesis refuses to run).
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)

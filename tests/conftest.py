"""Fixtures shared by several test directories."""
import pytest
import torch


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models (32-64 px) gain nothing from a second thread, while OpenMP threads that
    spin-wait next to another busy process on a 2-core machine slowed a forward pass from 3 ms
    to 1.5 s. Restored afterwards, so the crop-operator tests keep exercising the kernel's
    multi-threaded paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

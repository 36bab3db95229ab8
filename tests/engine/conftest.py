import numpy as np
import pytest
import torch

import msgf
import msgf.engine
from msgf.engine import EXIT, Thresholds


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_run_single_threaded(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return msgf.build_model("resnet18", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3).eval()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (9, 70, 90, 3), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def labels():
    return torch.arange(9) % 5


def offset(t: int, K: int) -> int:
    """First node of level t: sum over s < t of K^(s-1) (issue 6)."""
    return sum(K ** (s - 1) for s in range(1, t))


def node(path: tuple, K: int) -> int:
    """Node of the path of size indices (k_2, ..., k_t): offset_t + sum_j k_j K^(t-j)."""
    t = len(path) + 1
    return offset(t, K) + sum(k * K ** (t - j) for j, k in enumerate(path, start=2))


def spread_thresholds(conf_levels: list[np.ndarray]) -> Thresholds:
    """A K=2 threshold set splitting each level's confidences into thirds (exit / size 1 /
    size 0), placed halfway between neighbouring values so numerical noise cannot flip them."""
    def cut(values: np.ndarray, q: float) -> float:
        i = int(q * (len(values) - 1))
        return (values[i] + values[i + 1]) / 2

    rows = []
    for conf in conf_levels:
        values = np.unique(conf)
        rows.append([cut(values, 1 / 3), cut(values, 2 / 3)])
    return Thresholds(rows)


def eq9(eta_row, c: float) -> int:
    """Eq. 9 for one sample as a plain loop (the oracle)."""
    if c >= max(eta_row):
        return EXIT
    reachable = [k for k, v in enumerate(eta_row) if v > c]
    return min(reachable, key=lambda k: (eta_row[k], k))


@pytest.fixture(scope="module")
def trajectory(model, images, labels, tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / "val.npz"
    batches = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    summary = msgf.engine.export_trajectories(model, batches, path, progress=False)
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    return path, data, summary


@pytest.fixture(scope="module")
def thresholds(trajectory):
    _, data, _ = trajectory
    return spread_thresholds([data["conf"][:, 0], data["conf"][:, 1:3].ravel()])


@pytest.fixture(scope="session")
def node_of():
    return node


@pytest.fixture(scope="session")
def eq9_rule():
    return eq9

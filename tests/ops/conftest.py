"""Shared inputs of the crop-operator tests: real photographs that scikit-image ships."""
import numpy as np
import pytest
import torch
from skimage import data


def _as_nhwc(image: np.ndarray) -> torch.Tensor:
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image[:, :, :3]))[None]


@pytest.fixture(scope="session", params=["astronaut", "coffee", "camera"])
def photo_u8(request) -> torch.Tensor:
    """(1, H, W, C) uint8 photograph: RGB 512x512, RGB 400x600, grayscale 512x512."""
    return _as_nhwc(getattr(data, request.param)())

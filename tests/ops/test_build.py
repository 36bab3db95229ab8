"""What the build compiled: the CUDA kernel whenever nvcc was available to it."""
import os
import shutil

import pytest
import torch

from msgf import _C
from msgf.ops import backends, crop_resize


def test_cuda_kernel_compiled_when_nvcc_present():
    if os.environ.get("MSGF_CUDA", "AUTO").upper() == "OFF":
        pytest.skip("MSGF_CUDA=OFF asked for a CPU-only build")
    if shutil.which("nvcc") is None and not os.environ.get("CUDACXX"):
        pytest.skip("no nvcc on this machine")
    assert _C.has_cuda, "nvcc is installed but the extension was built without the CUDA kernel"
    assert backends()["cuda"] == "cuda kernel"


def test_cpu_backend_reports_itself():
    assert backends()["cpu"].startswith("c++")
    assert _C.cpu_isa in ("generic", "avx2", "avx512")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(antialias, out_dtype):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 300, 400, 3), dtype=torch.uint8, generator=generator)
    boxes = torch.tensor([[0, 10.0, 20.0, 106.0, 116.0], [1, 0.0, 0.0, 400.0, 300.0], [2, 50.3, 7.7, 99.1, 200.0],
                          [3, -20.0, -5.0, 60.0, 90.0]])
    sizes = [96, 64, 128, 96]
    cpu = crop_resize(images, boxes, sizes, mean=0.5, std=0.25, antialias=antialias, out_dtype=out_dtype)
    gpu = crop_resize(images.cuda(), boxes.cuda(), sizes, mean=0.5, std=0.25, antialias=antialias, out_dtype=out_dtype)
    for a, b in zip(cpu.patches, gpu.patches):
        if not antialias:  # same formulas, no FMA contraction on either side: bit for bit
            assert torch.equal(a, b.cpu())
        else:              # separable (CPU) vs direct 2-D sum (GPU): float rounding apart
            tolerance = 1e-4 if out_dtype == torch.float32 else 2e-2
            assert (a.float() - b.cpu().float()).abs().max() <= tolerance

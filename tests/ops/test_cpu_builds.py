"""Every instruction-set build of the CPU kernel gives the same patches.

The machine runs only its widest build by default; MSGF_CPU_ISA selects the others in a
subprocess. Copy and bilinear paths must agree bit for bit (no FMA contraction anywhere);
the antialiased path may use FMA where the build has it, so it agrees to float rounding."""
import os
import subprocess
import sys

import pytest
import torch

from msgf import _C

SCRIPT = r"""
import sys, torch
from msgf import _C
from msgf.ops import crop_resize
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (3, 120, 170, 3), dtype=torch.uint8, generator=g)
boxes = torch.tensor([[0, 10.0, 20.0, 74.0, 84.0], [1, 3.3, 7.9, 150.2, 111.0], [2, 0.0, 0.0, 170.0, 120.0],
                      [2, -9.0, 50.0, 30.0, 130.0]])
sizes = [64, 40, 24, 96]
out = {"isa": _C.cpu_isa}
for aa in (False, True):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        r = crop_resize(images, boxes, sizes, mean=0.4, std=0.3, antialias=aa, out_dtype=dtype)
        out[(aa, str(dtype))] = [p.float() for p in r.patches]
torch.save(out, sys.argv[1])
"""


def run_with_isa(isa, path):
    env = dict(os.environ, MSGF_CPU_ISA=isa)
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env)
    return torch.load(path)


def test_all_builds_agree(tmp_path):
    builds = ["generic", "avx2", "avx512"]
    results = {isa: run_with_isa(isa, tmp_path / f"{isa}.pt") for isa in builds}
    ran = {r["isa"] for r in results.values()}
    assert "generic" in ran and _C.cpu_isa in ran
    reference = results["generic"]
    for isa, result in results.items():
        for key, patches in result.items():
            if key == "isa":
                continue
            antialias, dtype = key
            for mine, theirs in zip(patches, reference[key]):
                if antialias:
                    tolerance = 1e-5 if dtype == "torch.float32" else 1e-2
                    assert (mine - theirs).abs().max() <= tolerance, (isa, key)
                else:
                    assert torch.equal(mine, theirs), (isa, key)


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_selection_is_honoured(isa, tmp_path):
    if _C.cpu_isa == "generic" and isa != "generic":
        pytest.skip("this CPU has only the generic build")
    assert run_with_isa(isa, tmp_path / "r.pt")["isa"] == isa

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def write_image():
    """write_image(path, array) saves an RGB uint8 array (format by suffix) and returns the path."""
    def write(path: Path, array: np.ndarray, **options) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, **options)
        return path
    return write


@pytest.fixture
def run_script():
    """Run a repo script in a fresh interpreter; returns CompletedProcess."""
    import subprocess

    def run(relative: str, *args: str, check: bool = True):
        return subprocess.run([sys.executable, str(REPO / relative), *args], capture_output=True, text=True,
                              check=check, cwd=REPO)
    return run

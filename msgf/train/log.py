"""Run records on rank 0: a CSV of every metric, TensorBoard events when tensorboard is
installed, and one printed line per epoch."""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path


class RunLog:
    FIELDS = ("time", "stage", "epoch", "split", "key", "value")

    def __init__(self, out: Path, enabled: bool, append: bool = False):
        self.enabled = enabled
        self.start = time.time()
        self.tb = None
        if not enabled:
            return
        self.path = Path(out) / "log.csv"
        new = not (append and self.path.exists())  # a fresh run starts a fresh log; --resume appends
        self.file = open(self.path, "w" if new else "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.FIELDS)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: CSV only
            SummaryWriter = None
        if SummaryWriter is not None:
            self.tb = SummaryWriter(log_dir=os.fspath(Path(out) / "tensorboard"))
        self.global_step = {}

    def metrics(self, stage: str, epoch: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        now = round(time.time() - self.start, 2)
        for key, value in _flatten(values):
            self.writer.writerow((now, stage, epoch, split, key, value))
            if self.tb is not None and isinstance(value, (int, float)) and not math.isnan(value):
                self.tb.add_scalar(f"{stage}/{split}/{key}", value, epoch)
        self.file.flush()

    def print(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def _flatten(values: dict, prefix: str = ""):
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + "/")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, (int, float)) or v is None:
                    yield f"{name}[{i}]", v
        elif isinstance(value, (int, float, str)) or value is None:
            yield name, value

import pytest
import torch

from msgf.reproduce import claims


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


class FakeSplits:
    """msgf.train.data.Splits' interface over a few random scenes of `size` (H, W)."""

    def __init__(self, size=(24, 32)):
        gen = torch.Generator().manual_seed(0)
        self.sets = {}
        for name, count in (("train", 16), ("val", 8), ("test", 8)):
            images = torch.randint(0, 256, (count, *size, 3), dtype=torch.uint8, generator=gen)
            self.sets[name] = [{"image": images[i], "label": i % 4, "boxes": torch.zeros((0, 4)), "path": None}
                               for i in range(count)]

    def train(self, stage, epoch):
        return self.sets["train"]

    def evaluation(self, which):
        return self.sets[which]

    def classes(self):
        return ["EMPTY", "50", "70", "80"]


@pytest.fixture
def fake_splits():
    """FakeSplits, to call with a scene size."""
    return FakeSplits


def _row(budget, accuracy, macs):
    return {"budget": budget, "val_accuracy": accuracy, "val_macs": macs, "test_accuracy": accuracy,
            "test_macs": macs, "result": {"thresholds": [["-inf", 0.5]], "budget": budget}}


@pytest.fixture
def hand_report():
    """A complete report dict of hand-chosen numbers (2 budgets, sizes 64/96, T=3) whose claims
    are computed by msgf.reproduce.claims from per-scene scores that agree with them: three pass,
    two fail."""
    budgets = [10e6, 20e6]
    sweeps = {"ms": [_row(10e6, 0.70, 9e6), _row(20e6, 0.80, 19e6)],
              "fixed-64": [_row(10e6, 0.65, 9e6), _row(20e6, 0.75, 18e6)],
              "fixed-96": [_row(10e6, 0.60, 8e6), _row(20e6, 0.78, 19e6)]}
    random_rows = [_row(10e6, 0.66, 9e6), _row(20e6, 0.74, 19e6)]  # +6 points: fails the +10 claim
    criteria = {"confidence": sweeps["ms"], "entropy": [_row(10e6, 0.69, 9e6), _row(20e6, 0.80, 19e6)],
                "random": [_row(10e6, 0.60, 9e6), _row(20e6, 0.70, 19e6)]}
    reward = {"contrastive": {"accuracy_policy": [0.5, 0.70, 0.8], "accuracy_random": [0.5, 0.55, 0.6],
                              "hit_rate_policy": [0.4, 0.5], "hit_rate_random": [0.02, 0.03]},
              "increments": {"accuracy_policy": [0.5, 0.72, 0.8], "accuracy_random": [0.5, 0.55, 0.6],
                             "hit_rate_policy": [0.3, 0.4], "hit_rate_random": [0.02, 0.03]}}
    static = [{"name": "static-480x640", "size": [480, 640], "epochs": 8, "best_epoch": 7, "macs": 340e6,
               "val_accuracy": 0.70, "test_accuracy": 0.72, "seconds": 600.0, "reused": False},
              {"name": "static-960x1280", "size": [960, 1280], "epochs": 4, "best_epoch": 3, "macs": 1.33e9,
               "val_accuracy": 0.74, "test_accuracy": 0.75, "seconds": 1800.0, "reused": True}]
    glance = {name: {"macs": 5e6, "accuracy": 0.5} for name in sweeps}
    front = [(5e6, 0.5)] + [(r["test_macs"], r["test_accuracy"]) for r in sweeps["ms"]]
    needed = claims.macs_to_reach(front, 0.75)  # 9M + 0.5 * 10M = 14M
    def right(count):  # per-scene scores of 1000 test scenes, right on the first `count`
        return [1.0] * count + [0.0] * (1000 - count)

    claim_list = [claims.ms_vs_fixed([right(700), right(800)], {"fixed-64": [right(650), right(750)],
                                                                "fixed-96": [right(600), right(780)]}),
                  claims.policy_vs_random([right(700), right(800)], [right(660), right(740)]),
                  claims.criteria_order([right(700), right(800)], [right(690), right(800)], [right(600), right(700)]),
                  claims.reward(right(700), right(720)),
                  claims.saving(1.33e9, needed, right(800), right(750))]
    cfg = {"backbone": "mobilenet_v3_small", "glance_size": 96, "patch_sizes": [64, 96], "T": 3, "seed": 0,
           "data": {"image_size": [960, 1280], "train_samples": 1500, "val_samples": 300, "test_samples": 500}}
    runs = [{"name": "fixed-64", "overrides": {"seed": 0, "patch_sizes": [64]}, "stages": [0, 1, 2, 3], "init": None},
            {"name": "fixed-96", "overrides": {"seed": 0, "patch_sizes": [96]}, "stages": [0, 1, 2, 3], "init": None},
            {"name": "ms", "overrides": {"seed": 0}, "stages": [0, 1, 2, 3], "init": None},
            {"name": "ms-increments", "overrides": {"seed": 0, "stage2.reward": "increments"}, "stages": [2],
             "init": "ms/stage1.ckpt"}]
    speed = {"images": 64, "repeats": 5, "median_seconds": 2.0, "images_per_second": 32.0, "seconds": [2.0] * 5,
             "threads": 1}
    return {
        "preset": "cpu", "command": "msgf reproduce --preset cpu", "workdir": "runs/reproduce-cpu",
        "started": "2026-01-01T00:00:00", "wall_seconds": 3600.0,
        "training_seconds": {"fixed-64": 600.0, "fixed-96": 700.0, "ms": 900.0, "ms-increments": 200.0,
                             "static-480x640": 600.0, "static-960x1280": 1800.0},
        "reused": ["static-960x1280"],
        "environment": {"torch": "2.14.1", "cpu_count": 2, "torch_threads": 1},
        "plan": {"train_preset": "cpu-demo-scratch", "search_method": "ga", "gfnet_runs": runs},
        "notes": [], "configs": {"ms": cfg}, "runs": {}, "static": static, "budgets": budgets,
        "majority_accuracy": 0.5, "glance": glance, "sweeps": sweeps,
        "policy_ablation": {"random_seed": 0, "random_locations": random_rows, "hit_rate_policy": [0.4, 0.5],
                            "hit_rate_random": [0.02, 0.03], "accuracy_policy": [0.5, 0.7, 0.8],
                            "accuracy_random": [0.5, 0.55, 0.6]},
        "criteria": criteria, "reward": reward,
        "saving": {"best_static": "static-960x1280", "static_accuracy": 0.75, "static_macs": 1.33e9, "front": front,
                   "ms_gfnet_macs": needed, "ratio": 1.33e9 / needed},
        "throughput": {"images": 64, "operating_point": "budget 20.00M", "thresholds": {},
                       "static": {"name": "static-960x1280", "macs": 1.33e9, **speed, "images_per_second": 2.0},
                       "ms_gfnet": {**speed, "mean_macs": 14e6}, "speedup": 16.0},
        "claims": [c.to_dict() for c in claim_list],
    }

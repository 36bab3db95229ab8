"""Exit thresholds eta[t, k] and the paper's Eq. 9 rule that reads them.

At step t < T with confidence c a sample exits if c >= max_k eta[t, k]; otherwise it continues
with the patch size k whose threshold is the smallest one > c (ties: the smaller k). Step T
always exits. With one patch size (K = 1) this is the plain "exit if c >= eta_t" rule of the
official GFNet code, under which a tie at the threshold (often confidences of exactly 1.0)
leaves together. Sets stored before carry no "rule" and meant c > eta; they load converted to
the same decisions (threshold_search.rule).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from msgf.threshold_sets import choose, from_search_result, parse_json, threshold_sets

EXIT = -1  # `next_size_index` value of a sample that stops


@dataclass(frozen=True, eq=False)  # eta is an array: compare to_dict() instead
class Thresholds:
    """eta (T-1, K) float64 plus where it came from: the budget it was searched for (MACs per
    image), the accuracy and average MACs it achieved on the search data, the patch sizes."""

    eta: np.ndarray
    budget: float | None = None
    accuracy: float | None = None
    macs: float | None = None
    sizes: tuple[int, ...] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # "inf" / "-inf" strings are how JSON files spell infinite thresholds
            eta = np.array(self.eta, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"eta must be a (T-1, K) array of numbers: {err}") from None
        if eta.ndim != 2 or eta.shape[0] < 1 or eta.shape[1] < 1:
            raise ValueError(f"eta must have shape (T-1, K) with T >= 2 and K >= 1, got {eta.shape}")
        if np.isnan(eta).any():
            raise ValueError("eta must not be NaN (use inf / -inf for never / always exit)")
        eta.setflags(write=False)
        object.__setattr__(self, "eta", eta)
        for name in ("budget", "accuracy", "macs"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{name} must be a finite number or None, got {value!r}")
                if value < 0 or (name == "budget" and value == 0) or (name == "accuracy" and value > 1):
                    allowed = {"budget": "> 0 MACs", "accuracy": "in [0, 1]", "macs": ">= 0"}[name]
                    raise ValueError(f"{name} must be {allowed}, got {value!r}")
                object.__setattr__(self, name, float(value))
        if self.sizes is not None:
            sizes = tuple(int(s) for s in self.sizes)
            if len(sizes) != eta.shape[1]:
                raise ValueError(f"sizes must have one entry per column of eta ({eta.shape[1]}), got {sizes}")
            object.__setattr__(self, "sizes", sizes)
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")
        json.dumps(self.meta)  # metadata must survive the JSON round trip

    @property
    def T(self) -> int:
        return self.eta.shape[0] + 1

    @property
    def num_sizes(self) -> int:
        return self.eta.shape[1]

    def next_size_index(self, step: int, confidence) -> torch.Tensor:
        """Eq. 9 at step `step` (1-based): (B,) index of the next patch size, or EXIT."""
        if not isinstance(step, int) or not 1 <= step <= self.T:
            raise ValueError(f"step must be in 1..{self.T}, got {step!r}")
        # float64 holds every float32 confidence exactly: the rule is evaluated on real numbers,
        # as threshold_search does.
        conf = torch.as_tensor(confidence).to(torch.float64)
        if step == self.T:
            return torch.full(conf.shape, EXIT, dtype=torch.int64, device=conf.device)
        eta = torch.tensor(self.eta[step - 1], device=conf.device)
        # With the row sorted stably (ties keep the smaller k first), the number of thresholds
        # at or below c is the position of the smallest one > c; all K means exit.
        order = torch.argsort(eta, stable=True)
        reached = (conf[:, None] >= eta[order][None, :]).sum(dim=1)
        return torch.where(reached == len(eta), EXIT, order[reached.clamp(max=len(eta) - 1)])

    def to_dict(self) -> dict:
        """Plain values; infinite thresholds become "inf" / "-inf" (as threshold_search writes them),
        and "rule" says they mean c >= eta."""
        from threshold_search.rule import EXIT_RULE  # here: the package imports pygad, which few callers need

        eta = [[str(v) if math.isinf(v) else v for v in row] for row in self.eta.tolist()]
        return {"eta": eta, "rule": EXIT_RULE, "budget": self.budget, "accuracy": self.accuracy, "macs": self.macs,
                "sizes": list(self.sizes) if self.sizes is not None else None, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, values: dict) -> "Thresholds":
        """A `to_dict()`; one without "rule" (written before it existed) meant c > eta and is
        converted to the same decisions under c >= eta."""
        from threshold_search.rule import LEGACY_RULE, check_rule, to_exit_rule

        if not isinstance(values, dict) or "eta" not in values:
            raise ValueError("thresholds must be a mapping with an 'eta' entry")
        unknown = sorted(set(values) - {"eta", "rule", "budget", "accuracy", "macs", "sizes", "meta"})
        if unknown:
            raise ValueError(f"unknown thresholds keys {unknown}")
        rule = check_rule(values.get("rule", LEGACY_RULE), "thresholds rule")
        thresholds = cls(**{k: v for k, v in values.items() if k != "rule" and not (k == "meta" and v is None)})
        return replace(thresholds, eta=to_exit_rule(thresholds.eta, rule))

    @classmethod
    def from_search(cls, result) -> "Thresholds":
        """From a `threshold_search.Result` or its `to_dict()`."""
        return cls.from_dict(from_search_result(result if isinstance(result, dict) else result.to_dict()))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, budget=None, *, source: str = "thresholds JSON") -> "Thresholds":
        """Our `to_json()`, a threshold_search Result or Front, or the report `msgf search-thresholds
        --out` writes (msgf.threshold_sets); where it holds several budgets, `budget` picks one."""
        sets = threshold_sets(parse_json(text, source), source)
        return cls.from_dict(sets[choose([t.get("budget") for t in sets], budget, source=source,
                                         remedy="search that budget with `msgf search-thresholds --out`")])

    @classmethod
    def load(cls, path, budget=None) -> "Thresholds":
        """`from_json` of a file."""
        with open(path) as handle:
            return cls.from_json(handle.read(), budget, source=str(path))

    def check_fits(self, T: int, patch_sizes) -> None:
        """Raise ValueError unless these thresholds fit a model with T steps and `patch_sizes`."""
        if self.eta.shape != (T - 1, len(patch_sizes)):
            raise ValueError(f"thresholds eta has shape {self.eta.shape}, "
                             f"the model needs ({T - 1}, {len(patch_sizes)})")
        if self.sizes is not None and tuple(self.sizes) != tuple(patch_sizes):
            raise ValueError(f"thresholds were searched for sizes {self.sizes}, the model has {tuple(patch_sizes)}")


def for_budget(candidates: list[Thresholds], budget) -> Thresholds:
    """The thresholds searched for `budget` (MACs, a number or "650M"; relative tolerance 1e-6)
    among `candidates` (a checkpoint's); with budget None, the only one there is."""
    return candidates[choose([t.budget for t in candidates], budget, source="the checkpoint",
                             remedy="run `msgf search-thresholds --ckpt ... --budget ...` on it first")]


def choose_thresholds(model, *, budget=None, thresholds=None) -> Thresholds:
    """The thresholds a run of `model` uses, checked to fit it: `thresholds` (a Thresholds, or a
    JSON file in any layout msgf.threshold_sets reads) when given, else the model's own (its
    checkpoint's); `budget` (MACs, a number or "650M") picks among several sets and may be left
    out where there is one."""
    if thresholds is None:
        chosen = for_budget(model.exit_thresholds, budget)
    elif isinstance(thresholds, Thresholds):  # one set: a budget given with it must be its own
        choose([thresholds.budget], budget, source="the thresholds given", remedy="leave the budget out to use them")
        chosen = thresholds
    elif isinstance(thresholds, (str, os.PathLike)):
        chosen = Thresholds.load(thresholds, budget)
    else:
        raise TypeError(f"thresholds: expected msgf.engine.Thresholds or a JSON path, got {type(thresholds).__name__}")
    chosen.check_fits(model.config.T, model.config.patch_sizes)
    return chosen

"""The paper's claims as pass/fail checks on measured numbers (issue 7).

Each check takes plain numbers (accuracies as fractions in [0, 1], MACs per image) and returns
a `Claim`: its name, whether it passed, the measured value and the target it was held to.
Nothing here is tuned: the targets are the issue's. Comparisons allow 1e-9 of float round-off
(0.6 - 0.5 is 0.0999... in binary), nothing more.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

EPS = 1e-9

MS_VS_FIXED = "ms_gfnet >= best fixed-size at every budget"
# the same claim for an MS-GFNet trained on as many patches of each size as a fixed-size GFNet
# (reported beside MS_VS_FIXED where the plan trains it; neither is chosen over the other)
MS_VS_FIXED_EQUAL_PRESENTATION = "ms_gfnet (equal patch presentations) >= best fixed-size at every budget"
POLICY_VS_RANDOM = "learned pi >= random + 10 points"
CRITERIA = "confidence >= entropy >= random"
REWARD = "contrastive >= increments at t=2"
SAVING = "MACs saving >= 10x at equal accuracy"
NAMES = (MS_VS_FIXED, POLICY_VS_RANDOM, CRITERIA, REWARD, SAVING)
# a static baseline counts for SAVING only this far above always answering the majority class:
# below it, "saving" compute against it would be saving it against a model that learned little
QUALIFYING_MARGIN = 0.20


def qualifies(static_accuracy: float, majority_accuracy: float) -> bool:
    return static_accuracy >= majority_accuracy + QUALIFYING_MARGIN - EPS


@dataclass(frozen=True)
class Claim:
    name: str
    passed: bool
    value: float | dict | None  # what was measured (None: it could not be)
    target: float | str
    detail: str  # how value was computed, in words

    def to_dict(self) -> dict:
        return asdict(self)


def _check_lengths(name: str, values, count: int) -> None:
    if len(values) != count:
        raise ValueError(f"{name}: expected {count} accuracies (one per budget), got {len(values)}")


def ms_vs_fixed(ms: list[float], fixed: dict[str, list[float]], name: str = MS_VS_FIXED) -> Claim:
    """MS-GFNet's test accuracy minus the best fixed-size GFNet's, at each budget; the claim
    holds when the smallest of these differences is >= 0."""
    if not ms or not fixed:
        raise ValueError("ms, fixed: expected accuracies at one or more budgets for MS-GFNet and each fixed size")
    for run, values in fixed.items():
        _check_lengths(f"fixed[{run!r}]", values, len(ms))
    gaps = [m - max(values[i] for values in fixed.values()) for i, m in enumerate(ms)]
    worst = min(gaps)
    return Claim(name, worst >= -EPS, worst, 0.0,
                 f"smallest (MS-GFNet - best fixed size) test accuracy over {len(ms)} budgets")


def policy_vs_random(policy: list[float], random: list[float], margin: float = 0.10) -> Claim:
    """Test accuracy with pi's locations minus with random ones, at the largest budget of the
    sweep (where every sample may take every focus step, so locations matter most)."""
    if not policy:
        raise ValueError("policy: expected accuracies at one or more budgets")
    _check_lengths("random", random, len(policy))
    gain = policy[-1] - random[-1]
    return Claim(POLICY_VS_RANDOM, gain >= margin - EPS, gain, margin,
                 "(learned pi - random locations) test accuracy at the largest budget")


def criteria_order(confidence: list[float], entropy: list[float], random: list[float]) -> Claim:
    """Mean test accuracy over the same budgets for each exit criterion, in the claimed order."""
    if not confidence:
        raise ValueError("confidence: expected accuracies at one or more budgets")
    _check_lengths("entropy", entropy, len(confidence))
    _check_lengths("random", random, len(confidence))
    means = {name: sum(v) / len(v) for name, v in (("confidence", confidence), ("entropy", entropy),
                                                   ("random", random))}
    passed = means["confidence"] >= means["entropy"] - EPS and means["entropy"] >= means["random"] - EPS
    return Claim(CRITERIA, passed, means, "confidence >= entropy >= random",
                 f"mean test accuracy over the same {len(confidence)} budgets, per exit criterion")


def reward(contrastive: list[float], increments: list[float]) -> Claim:
    """Test accuracy at t=2 (the first focus step, index 1) after stage II with each reward."""
    if len(contrastive) < 2 or len(increments) < 2:
        raise ValueError("contrastive, increments: expected accuracy per step t=1..T with T >= 2")
    gain = contrastive[1] - increments[1]
    return Claim(REWARD, gain >= -EPS, gain, 0.0,
                 "(contrastive - increments) test accuracy at t=2 after stage II, pi's locations")


def macs_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The MACs at which the accuracy-vs-MACs front first reaches `target`, or None.

    points are (MACs, accuracy). The front keeps, in order of MACs, each point more accurate
    than every cheaper one; between two front points accuracy is interpolated linearly. When
    the cheapest point already reaches the target its MACs are returned (nothing cheaper was
    measured)."""
    if not points:
        raise ValueError("points: expected at least one (MACs, accuracy) point")
    front: list[tuple[float, float]] = []
    for macs, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((float(macs), float(accuracy)))
    if front[0][1] >= target - EPS:
        return front[0][0]
    for (m0, a0), (m1, a1) in zip(front, front[1:]):
        if a1 >= target - EPS:
            return m0 + (target - a0) / (a1 - a0) * (m1 - m0)
    return None


def saving(static_macs: float | None, needed_macs: float | None, factor: float = 10.0) -> Claim:
    """MACs of the best static baseline divided by what MS-GFNet needs for its accuracy;
    static_macs None: no static baseline learned enough to be compared against."""
    if static_macs is None:
        return Claim(SAVING, False, None, factor,
                     f"no static baseline scored {QUALIFYING_MARGIN * 100:.0f} points above the majority class")
    if static_macs <= 0:
        raise ValueError(f"static_macs: expected a positive cost, got {static_macs}")
    if needed_macs is None:
        return Claim(SAVING, False, None, factor,
                     "MS-GFNet's test front never reaches the best static baseline's test accuracy")
    ratio = static_macs / needed_macs
    return Claim(SAVING, ratio >= factor - EPS, ratio, factor,
                 "best static baseline's MACs / MS-GFNet's MACs at the same test accuracy (interpolated)")

"""The paper's claims as checks on measured numbers (issue 7), each with a paired 95% interval
and a three-way verdict (issue 28).

Each check takes per-scene scores of the same test scenes (1 where a model classifies a scene
right, 0 where not; a mean over patch sizes may give fractions) and returns a `Claim`: its
name, the measured value (a difference of accuracies, or a ratio), the 95% interval of the
paired difference the verdict rests on, and the verdict against the issue's target:

- PASS: the whole interval meets the target;
- FAIL: the whole interval misses it;
- INCONCLUSIVE: the interval spans the target. At 500 scenes one standard error of an accuracy
  is about 2 points, so a 0.4-point gap is not a failure of anything.

Differences are paired (both models on the same scenes), so what the two models share does not
widen the interval: it is the normal interval of the mean per-scene difference. Nothing here is
tuned: the targets are the issue's. Comparisons allow 1e-9 of float round-off (0.6 - 0.5 is
0.0999... in binary), nothing more.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-9
Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)

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
SAVING_FACTOR = 10.0  # the paper's headline: the static model's accuracy at a tenth of its MACs


def qualifies(static_accuracy: float, majority_accuracy: float) -> bool:
    return static_accuracy >= majority_accuracy + QUALIFYING_MARGIN - EPS


@dataclass(frozen=True)
class Claim:
    name: str
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    value: float | dict | None  # what was measured (None: it could not be)
    target: float | str
    detail: str  # how value was computed, in words
    interval: list | dict | None = None  # 95% interval(s) of the paired difference(s) judged

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def scene_scores(name: str, values, count: int | None = None) -> np.ndarray:
    """`values` as a float array of per-scene scores in [0, 1], or a ValueError naming `name`."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) < 2:
        raise ValueError(f"{name}: expected per-scene scores of two or more scenes, got shape {array.shape}")
    if count is not None and len(array) != count:
        raise ValueError(f"{name}: expected scores of the same {count} scenes, got {len(array)}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{name}: expected scores in [0, 1] (1: classified right)")
    return array


def paired_difference(a, b, names: tuple[str, str] = ("a", "b")) -> tuple[float, list[float]]:
    """mean(a - b) over the same scenes and its 95% normal interval."""
    a = scene_scores(names[0], a)
    diff = a - scene_scores(names[1], b, len(a))
    mean = float(diff.mean())
    half = Z95 * float(diff.std(ddof=1)) / math.sqrt(len(diff))
    return mean, [mean - half, mean + half]


def verdict(interval, target: float) -> str:
    """PASS when all of `interval` is at or above `target`, FAIL when all of it is below."""
    low, high = interval
    if low >= target - EPS:
        return PASS
    if high < target - EPS:
        return FAIL
    return INCONCLUSIVE


def combined(verdicts) -> str:
    """One verdict for claims that must hold everywhere: any FAIL fails, all PASS passes."""
    verdicts = list(verdicts)
    if FAIL in verdicts:
        return FAIL
    return PASS if all(v == PASS for v in verdicts) else INCONCLUSIVE


def _check_lengths(name: str, values, count: int) -> None:
    if len(values) != count:
        raise ValueError(f"{name}: expected {count} per-scene score arrays (one per budget), got {len(values)}")


def _accuracy(scores) -> float:
    return float(np.mean(scores))


def ms_vs_fixed(ms: list, fixed: dict[str, list], name: str = MS_VS_FIXED) -> Claim:
    """At each budget, MS-GFNet's per-scene scores against those of the fixed-size GFNet most
    accurate there. The value is the smallest accuracy gap over the budgets, the interval that
    budget's; the verdict holds at every budget (combined)."""
    if not ms or not fixed:
        raise ValueError("ms, fixed: expected per-scene scores at one or more budgets for MS-GFNet and each fixed size")
    for run, values in fixed.items():
        _check_lengths(f"fixed[{run!r}]", values, len(ms))
    gaps = []
    for i, scores in enumerate(ms):
        best = max(fixed, key=lambda run: _accuracy(fixed[run][i]))
        gaps.append(paired_difference(scores, fixed[best][i], ("ms", f"fixed[{best!r}]")))
    worst = min(range(len(gaps)), key=lambda i: gaps[i][0])
    return Claim(name, combined(verdict(interval, 0.0) for _, interval in gaps), gaps[worst][0], 0.0,
                 f"smallest (MS-GFNet - best fixed size) test accuracy over {len(ms)} budgets, paired; "
                 "the verdict needs every budget's interval", gaps[worst][1])


def policy_vs_random(policy: list, random: list, margin: float = 0.10) -> Claim:
    """Test accuracy with pi's locations minus with random ones, at the largest budget of the
    sweep (where every sample may take every focus step, so locations matter most)."""
    if not policy:
        raise ValueError("policy: expected per-scene scores at one or more budgets")
    _check_lengths("random", random, len(policy))
    gain, interval = paired_difference(policy[-1], random[-1], ("policy", "random"))
    return Claim(POLICY_VS_RANDOM, verdict(interval, margin), gain, margin,
                 "(learned pi - random locations) test accuracy at the largest budget, paired", interval)


def criteria_order(confidence: list, entropy: list, random: list) -> Claim:
    """Each scene's score averaged over the same budgets, per exit criterion, in the claimed
    order: confidence - entropy and entropy - random must both be >= 0."""
    if not confidence:
        raise ValueError("confidence: expected per-scene scores at one or more budgets")
    _check_lengths("entropy", entropy, len(confidence))
    _check_lengths("random", random, len(confidence))
    per_scene = {name: np.mean([scene_scores(f"{name}[{i}]", v) for i, v in enumerate(values)], axis=0)
                 for name, values in (("confidence", confidence), ("entropy", entropy), ("random", random))}
    means = {name: float(scores.mean()) for name, scores in per_scene.items()}
    intervals = {f"{a} - {b}": paired_difference(per_scene[a], per_scene[b], (a, b))[1]
                 for a, b in (("confidence", "entropy"), ("entropy", "random"))}
    return Claim(CRITERIA, combined(verdict(i, 0.0) for i in intervals.values()), means,
                 "confidence >= entropy >= random",
                 f"mean test accuracy over the same {len(confidence)} budgets, per exit criterion; both "
                 "differences paired", intervals)


def reward(contrastive, increments) -> Claim:
    """Per-scene scores at t=2 (the first focus step) after stage II with each reward."""
    gain, interval = paired_difference(contrastive, increments, ("contrastive", "increments"))
    return Claim(REWARD, verdict(interval, 0.0), gain, 0.0,
                 "(contrastive - increments) test accuracy at t=2 after stage II, pi's locations, mean over "
                 "patch sizes, paired", interval)


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


def saving(static_macs: float | None, needed_macs: float | None, ms_scores=None, static_scores=None,
           factor: float = SAVING_FACTOR) -> Claim:
    """The MACs saving at equal accuracy, judged on paired scenes.

    value: the best static baseline's MACs divided by those at which MS-GFNet's test front
    reaches its accuracy (interpolated; a point estimate). The verdict asks the same question
    with an interval: `ms_scores` are MS-GFNet's per-scene scores at the largest budget of at
    most static_macs / factor, `static_scores` the static model's on the same scenes; the
    saving holds when MS-GFNet is at least as accurate there. static_macs None: no static
    baseline learned enough to be compared against; ms_scores None: no budget that cheap."""
    if static_macs is None:
        return Claim(SAVING, FAIL, None, factor,
                     f"no static baseline scored {QUALIFYING_MARGIN * 100:.0f} points above the majority class")
    if static_macs <= 0:
        raise ValueError(f"static_macs: expected a positive cost, got {static_macs}")
    ratio = None if needed_macs is None else static_macs / needed_macs
    if ms_scores is None or static_scores is None:
        return Claim(SAVING, FAIL, ratio, factor,
                     f"no MS-GFNet budget at or below 1/{factor:g} of the static baseline's MACs was measured")
    gap, interval = paired_difference(ms_scores, static_scores, ("ms_scores", "static_scores"))
    reached = "never reaches its accuracy" if ratio is None else f"reaches its accuracy at {ratio:.1f}x fewer MACs"
    return Claim(SAVING, verdict(interval, 0.0), ratio, factor,
                 f"MS-GFNet's test front {reached} (interpolated); the verdict: (MS-GFNet at 1/{factor:g} of the "
                 f"static MACs - static) test accuracy, paired, {100 * gap:+.1f} points", interval)

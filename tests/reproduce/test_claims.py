"""The claims of issues 7 and 28 on hand-built per-scene scores: the paired interval against
scipy's normal interval, and each claim's PASS, FAIL and INCONCLUSIVE."""
import numpy as np
import pytest
from scipy import stats

from msgf.reproduce import claims


def right(count, total=1000, start=0):
    """0/1 scores of `total` scenes, 1 on scenes start .. start+count-1."""
    scores = np.zeros(total)
    scores[start:start + count] = 1
    return scores


def test_the_paired_interval_is_the_normal_interval_of_the_per_scene_differences():
    rng = np.random.default_rng(0)
    a, b = (rng.random(400) < 0.8).astype(float), (rng.random(400) < 0.7).astype(float)
    mean, interval = claims.paired_difference(a, b)
    diff = a - b
    expected = stats.norm.interval(0.95, loc=diff.mean(), scale=stats.sem(diff))
    assert mean == pytest.approx(diff.mean()) and interval == pytest.approx(list(expected))


def test_pairing_narrows_the_interval_when_models_share_their_errors():
    # both right on the same 700 scenes, the first also on 30 more: 3 points apart, and the
    # interval that pairs them sees only those 30 scenes differ
    _, paired = claims.paired_difference(right(730), right(700))
    assert paired[0] > 0.015
    unpaired_half = 1.96 * np.sqrt(0.73 * 0.27 / 1000 + 0.7 * 0.3 / 1000)
    assert paired[1] - paired[0] < unpaired_half


@pytest.mark.parametrize("interval, target, verdict", [
    ([0.01, 0.05], 0.0, claims.PASS), ([0.0, 0.05], 0.0, claims.PASS), ([-0.05, -0.01], 0.0, claims.FAIL),
    ([-0.01, 0.02], 0.0, claims.INCONCLUSIVE), ([0.08, 0.12], 0.10, claims.INCONCLUSIVE),
    ([0.6 - 0.5, 0.2], 0.10, claims.PASS),  # 0.0999... in binary still meets 0.10
])
def test_verdicts_against_the_target(interval, target, verdict):
    assert claims.verdict(interval, target) == verdict


def test_a_claim_that_must_hold_everywhere_fails_on_one_failure():
    yes, no, unsure = claims.PASS, claims.FAIL, claims.INCONCLUSIVE
    assert claims.combined([yes, yes]) == yes and claims.combined([yes, unsure]) == unsure
    assert claims.combined([unsure, no, yes]) == no


def test_ms_vs_fixed_judges_every_budget_against_its_best_fixed_size():
    fixed = {"fixed-64": [right(600), right(700)], "fixed-96": [right(650), right(690)]}
    clear_win = claims.ms_vs_fixed([right(750), right(800)], fixed)
    assert clear_win.verdict == claims.PASS and clear_win.name == claims.MS_VS_FIXED
    assert clear_win.value == pytest.approx(0.10)  # 800 - 700 at the second budget, against fixed-64
    lost_one = claims.ms_vs_fixed([right(750), right(600)], fixed)  # 10 points under fixed-64
    assert lost_one.verdict == claims.FAIL and lost_one.value == pytest.approx(-0.10)
    assert lost_one.interval[1] < 0
    close = claims.ms_vs_fixed([right(650), right(705)], fixed)  # ties fixed-96, 5 scenes over fixed-64
    assert close.verdict == claims.PASS  # the same scenes right: no doubt about a tie
    noisy = claims.ms_vs_fixed([right(650, start=300), right(705)], fixed)  # 650 right, other scenes
    assert noisy.verdict == claims.INCONCLUSIVE and noisy.value == pytest.approx(0.0)


def test_ms_vs_fixed_rejects_curves_of_other_lengths():
    with pytest.raises(ValueError, match="fixed"):
        claims.ms_vs_fixed([right(5), right(6)], {"fixed-96": [right(5)]})


def test_policy_vs_random_needs_its_interval_above_ten_points():
    sure = claims.policy_vs_random([right(0), right(700)], [right(900), right(400)])  # only the last budget counts
    assert sure.verdict == claims.PASS and sure.value == pytest.approx(0.30) and sure.target == 0.10
    near = claims.policy_vs_random([right(500)], [right(400)])  # 10 points, but +-1.9 of noise
    assert near.verdict == claims.INCONCLUSIVE
    assert claims.policy_vs_random([right(420)], [right(400)]).verdict == claims.FAIL


def test_criteria_order_pairs_each_scenes_mean_over_the_budgets():
    conf, ent, rand = [right(800), right(900)], [right(700), right(800)], [right(600), right(700)]
    claim = claims.criteria_order(conf, ent, rand)
    assert claim.verdict == claims.PASS
    assert claim.value == pytest.approx({"confidence": 0.85, "entropy": 0.75, "random": 0.65})
    assert set(claim.interval) == {"confidence - entropy", "entropy - random"}
    assert claims.criteria_order(conf, rand, ent).verdict == claims.FAIL  # random beats entropy
    assert claims.criteria_order(conf, [right(800), right(900)], rand).verdict == claims.PASS  # a tie holds
    assert claims.criteria_order(conf, [right(800, start=150), right(900)], rand).verdict == claims.INCONCLUSIVE


def test_reward_pairs_the_t2_scores_which_may_be_means_over_sizes():
    contrastive, increments = np.r_[np.full(500, 1.0), np.full(500, 0.5)], np.r_[np.full(500, 1.0), np.zeros(500)]
    claim = claims.reward(contrastive, increments)
    assert claim.verdict == claims.PASS and claim.value == pytest.approx(0.25)
    assert claims.reward(increments, contrastive).verdict == claims.FAIL


def test_macs_to_reach_interpolates_along_the_front():
    # front (1M, 0.5) -> (3M, 0.7) -> (5M, 0.8); (4M, 0.65) is dominated and skipped
    points = [(3e6, 0.7), (1e6, 0.5), (4e6, 0.65), (5e6, 0.8)]
    assert claims.macs_to_reach(points, 0.6) == pytest.approx(2e6)  # halfway from 1M to 3M
    assert claims.macs_to_reach(points, 0.75) == pytest.approx(4e6)  # halfway from 3M to 5M
    assert claims.macs_to_reach(points, 0.7) == pytest.approx(3e6)
    assert claims.macs_to_reach(points, 0.4) == pytest.approx(1e6)  # the cheapest point already reaches it
    assert claims.macs_to_reach(points, 0.81) is None


def test_saving_value_is_the_ratio_and_its_verdict_the_paired_accuracy_at_a_tenth():
    needed = claims.macs_to_reach([(1e7, 0.5), (1e8, 0.9)], 0.7)  # 1e7 + 0.5 * 9e7 = 5.5e7 MACs
    claim = claims.saving(1.2e9, needed, right(900), right(700))
    assert claim.verdict == claims.PASS and claim.value == pytest.approx(1.2e9 / 5.5e7)
    assert claims.saving(1.2e9, needed, right(700), right(700)).verdict == claims.PASS  # the same scenes
    assert claims.saving(1.2e9, needed, right(690), right(700, start=50)).verdict == claims.INCONCLUSIVE
    assert claims.saving(1.2e9, None, right(600), right(700)).verdict == claims.FAIL
    no_baseline = claims.saving(None, None)
    assert no_baseline.verdict == claims.FAIL and no_baseline.value is None
    assert claims.saving(1e9, 1e8).verdict == claims.FAIL  # no scores at a tenth of the MACs: not measured
    with pytest.raises(ValueError, match="static_macs"):
        claims.saving(0, 1e6, right(5), right(5))


@pytest.mark.parametrize("scores, match", [([1.0], "two or more"), ([0.0, 1.5], r"\[0, 1\]"),
                                           ([[0.0, 1.0]], "two or more"), ([0.0, float("nan")], r"\[0, 1\]")])
def test_bad_scores_name_the_argument(scores, match):
    with pytest.raises(ValueError, match=match):
        claims.paired_difference(scores, [0.0, 1.0])
    with pytest.raises(ValueError, match="same 3 scenes"):
        claims.paired_difference([0.0, 1.0, 1.0], [0.0, 1.0])


def test_claim_dicts_carry_the_verdict_and_its_interval():
    data = claims.reward(right(600), right(500)).to_dict()
    assert {"name", "verdict", "passed", "value", "target", "interval"} <= set(data)
    assert data["passed"] is (data["verdict"] == claims.PASS)

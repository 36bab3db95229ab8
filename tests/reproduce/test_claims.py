"""The claims of issue 7 as checks on hand-built numbers: pass, fail and the boundary."""
import pytest

from msgf.reproduce import claims


def test_ms_vs_fixed_uses_the_best_fixed_size_at_each_budget():
    fixed = {"fixed-96": [0.50, 0.60, 0.70], "fixed-128": [0.55, 0.58, 0.72]}
    passed = claims.ms_vs_fixed([0.56, 0.61, 0.72], fixed)
    assert passed.passed and passed.name == claims.MS_VS_FIXED
    assert passed.value == pytest.approx(0.0)  # ties fixed-128 at the last budget
    failed = claims.ms_vs_fixed([0.60, 0.59, 0.75], fixed)  # beaten by fixed-96 at the second budget
    assert not failed.passed and failed.value == pytest.approx(-0.01)


def test_ms_vs_fixed_rejects_curves_of_other_lengths():
    with pytest.raises(ValueError, match="fixed"):
        claims.ms_vs_fixed([0.5, 0.6], {"fixed-96": [0.5]})


def test_policy_vs_random_at_the_largest_budget_and_its_boundary():
    exactly_ten = claims.policy_vs_random([0.5, 0.6], [0.5, 0.5])  # 0.6 - 0.5 is 0.0999... in binary
    assert exactly_ten.passed and exactly_ten.value == pytest.approx(0.10) and exactly_ten.target == 0.10
    just_below = claims.policy_vs_random([0.9, 0.599], [0.1, 0.5])  # only the last budget counts
    assert not just_below.passed and just_below.value == pytest.approx(0.099)
    assert claims.policy_vs_random([0.5, 0.8], [0.6, 0.5]).passed


@pytest.mark.parametrize("conf, ent, rand, ok", [
    ([0.7, 0.8], [0.6, 0.8], [0.6, 0.7], True),
    ([0.7, 0.8], [0.7, 0.8], [0.7, 0.8], True),  # all equal: >= holds
    ([0.6, 0.8], [0.7, 0.8], [0.6, 0.7], False),  # entropy beats confidence
    ([0.7, 0.8], [0.6, 0.7], [0.7, 0.7], False),  # random beats entropy
])
def test_criteria_order_compares_mean_accuracy_over_the_budgets(conf, ent, rand, ok):
    claim = claims.criteria_order(conf, ent, rand)
    assert claim.passed is ok
    assert claim.value["confidence"] == pytest.approx(sum(conf) / 2)
    assert claim.value["random"] == pytest.approx(sum(rand) / 2)


def test_reward_compares_t2_only():
    assert claims.reward([0.5, 0.62, 0.6], [0.5, 0.60, 0.9]).passed  # t=3 does not count
    failed = claims.reward([0.5, 0.58, 0.9], [0.5, 0.60, 0.6])
    assert not failed.passed and failed.value == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="contrastive"):
        claims.reward([0.5], [0.5])


def test_macs_to_reach_interpolates_along_the_front():
    # front (1M, 0.5) -> (3M, 0.7) -> (5M, 0.8); (4M, 0.65) is dominated and skipped
    points = [(3e6, 0.7), (1e6, 0.5), (4e6, 0.65), (5e6, 0.8)]
    assert claims.macs_to_reach(points, 0.6) == pytest.approx(2e6)  # halfway from 1M to 3M
    assert claims.macs_to_reach(points, 0.75) == pytest.approx(4e6)  # halfway from 3M to 5M
    assert claims.macs_to_reach(points, 0.7) == pytest.approx(3e6)
    assert claims.macs_to_reach(points, 0.4) == pytest.approx(1e6)  # the cheapest point already reaches it
    assert claims.macs_to_reach(points, 0.81) is None


def test_saving_ratio_and_its_failures():
    claim = claims.saving(1.2e9, claims.macs_to_reach([(1e7, 0.5), (1e8, 0.9)], 0.7))
    # 0.7 is reached at 1e7 + 0.5 * 9e7 = 5.5e7 MACs: 1.2e9 / 5.5e7 = 21.8x
    assert claim.passed and claim.value == pytest.approx(1.2e9 / 5.5e7)
    assert claims.saving(1e9, 1e8).passed  # exactly 10x
    assert not claims.saving(1e9, 1.01e8).passed
    never = claims.saving(1e9, None)
    assert not never.passed and never.value is None
    with pytest.raises(ValueError, match="static_macs"):
        claims.saving(0, 1e6)


def test_claim_dicts_carry_the_four_fields():
    data = claims.reward([0.5, 0.6], [0.5, 0.5]).to_dict()
    assert {"name", "passed", "value", "target"} <= set(data)

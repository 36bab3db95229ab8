import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msgf.engine import EXIT, Thresholds, for_budget


def eq9_one_sample(eta_row: list[float], c: float, rule: str = ">="):
    """Paper Eq. 9 for one sample, as a plain loop: exit at c >= the largest threshold, else the
    smallest threshold above c. rule ">" is how sets stored before issue 29 read: exit at c > the
    largest, else the smallest threshold at or above c."""
    if (c >= max(eta_row)) if rule == ">=" else (c > max(eta_row)):
        return EXIT
    best = None
    for k, value in enumerate(eta_row):
        if (value > c if rule == ">=" else value >= c) and (best is None or value < eta_row[best]):
            best = k
    return best


# Coarse values make ties and equalities common; infinities mean "never" / "always" exit.
grid = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
etas = st.one_of(grid, st.sampled_from([np.inf, -np.inf]))


@settings(max_examples=200, deadline=None)
@given(eta=st.lists(st.lists(etas, min_size=3, max_size=3), min_size=2, max_size=2),
       conf=st.lists(st.one_of(grid, st.floats(0, 1, width=32)), min_size=1, max_size=20))
def test_next_size_follows_eq9(eta, conf):
    th = Thresholds(eta)
    c = torch.tensor(conf, dtype=torch.float32)
    for step in (1, 2):
        expected = [eq9_one_sample(eta[step - 1], float(v)) for v in c]
        assert th.next_size_index(step, c).tolist() == expected
    assert th.next_size_index(3, c).tolist() == [EXIT] * len(conf)  # the last step always exits


@settings(max_examples=200, deadline=None)
@given(eta=st.lists(st.lists(etas, min_size=3, max_size=3), min_size=2, max_size=2),
       conf=st.lists(st.one_of(grid, st.floats(0, 1, width=32)), min_size=1, max_size=20))
def test_sets_stored_before_the_rule_decide_as_they_did(eta, conf):
    # A checkpoint's or file's set from before issue 29: no "rule", meaning c > eta. Ties with
    # the thresholds are common here, so this holds on tied data, not only untied.
    stored = {"eta": [[str(v) if np.isinf(v) else v for v in row] for row in eta], "budget": 1e9, "sizes": [8, 16, 32]}
    c = torch.tensor(conf, dtype=torch.float32)
    for loaded in (Thresholds.from_dict(stored), Thresholds.from_json(json.dumps(stored)),
                   Thresholds.from_json(json.dumps({"thresholds": stored["eta"], "budget": 1e9, "accuracy": 0.5,
                                                    "macs": 1e9, "sizes": [8, 16, 32]}))):  # a Result, as written
        for step in (1, 2):
            expected = [eq9_one_sample(eta[step - 1], float(v), rule=">") for v in c]
            assert loaded.next_size_index(step, c).tolist() == expected
        again = Thresholds.from_json(loaded.to_json())  # written back with its rule: not converted twice
        assert np.array_equal(again.eta, loaded.eta)


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="thresholds rule: expected one of"):
        Thresholds.from_dict({"eta": [[0.5]], "rule": "=>"})


def test_single_size_is_plain_exit_rule():
    th = Thresholds([[0.625], [0.8]])
    assert th.next_size_index(1, torch.tensor([0.5, 0.625, 0.75])).tolist() == [0, EXIT, EXIT]  # a tie exits
    # float32 0.7 is slightly below the real 0.7: compared exactly, it does not reach it.
    assert Thresholds([[0.7]]).next_size_index(1, torch.tensor([0.7], dtype=torch.float32)).tolist() == [0]
    never, always = Thresholds([[np.inf]]), Thresholds([[-np.inf]])
    assert never.next_size_index(1, torch.tensor([1.0])).tolist() == [0]
    assert always.next_size_index(1, torch.tensor([0.0])).tolist() == [EXIT]


def test_json_round_trip():
    th = Thresholds(np.array([[0.1, np.inf], [0.3, 0.2]]), budget=1.5e9, accuracy=0.91, macs=1.49e9,
                    sizes=(96, 128), meta={"method": "ga"})
    back = Thresholds.from_json(th.to_json())
    assert back.to_dict() == th.to_dict()
    assert back.T == 3 and back.num_sizes == 2


def test_reads_threshold_search_results():
    threshold_search = pytest.importorskip("threshold_search")
    traj = threshold_search.make_trajectories(200, 3, [96, 128], seed=0)
    result = threshold_search.search(traj, traj.macs[0] * 1.5, method="geometric")
    th = Thresholds.from_search(result)
    assert np.array_equal(th.eta, result.thresholds) and th.sizes == (96, 128) and th.budget == result.budget
    assert th.meta["method"] == "geometric"
    assert Thresholds.from_json(json.dumps(result.to_dict())).to_dict() == th.to_dict()
    assert "Infinity" not in th.to_json()


def test_bad_thresholds():
    with pytest.raises(ValueError, match="eta"):
        Thresholds([0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        Thresholds([[float("nan")]])
    with pytest.raises(ValueError, match="eta"):
        Thresholds([["high"]])
    with pytest.raises(ValueError, match="sizes"):
        Thresholds([[0.5, 0.5]], sizes=(96,))
    with pytest.raises(ValueError, match="budget"):
        Thresholds([[0.5]], budget="1G")
    with pytest.raises(ValueError, match="malformed"):
        Thresholds.from_json("{eta")
    with pytest.raises(ValueError, match="unknown"):
        Thresholds.from_dict({"eta": [[0.5]], "bugdet": 1.0})
    with pytest.raises(ValueError, match="step"):
        Thresholds([[0.5]]).next_size_index(3, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="model needs"):
        Thresholds([[0.5]]).check_fits(3, (96,))


def test_for_budget_finds_the_match_or_says_what_to_run():
    a, b = Thresholds([[0.5]], budget=1e9), Thresholds([[0.7]], budget=2e9)
    assert for_budget([a, b], 2.0e9) is b and for_budget([a, b], "2G") is b
    with pytest.raises(ValueError, match=r"no thresholds for budget 1.50G MACs in the checkpoint \(budgets there: "
                                         r"1.00G, 2.00G\); run `msgf search-thresholds"):
        for_budget([a, b], 1.5e9)
    assert for_budget([a], None) is a  # no budget: the only set there is
    with pytest.raises(ValueError, match=r"the checkpoint holds 2 threshold sets \(budgets: 1.00G, 2.00G\)"):
        for_budget([a, b], None)
    with pytest.raises(ValueError, match="the checkpoint holds no thresholds; run `msgf search-thresholds"):
        for_budget([], None)


def _etas(report: dict) -> list[np.ndarray]:
    """Each result's thresholds as floats, read straight from the report's JSON."""
    return [np.array([[float(v) for v in row] for row in result["thresholds"]]) for result in report["results"]]


def test_reads_the_report_of_search_thresholds_and_picks_a_budget(search_report):
    from threshold_search import format_macs

    path, budgets = search_report
    report = json.loads(path.read_text())
    for budget, eta in zip(budgets, _etas(report)):
        for asked in (budget, f"{budget / 1e6!r}M"):  # as a number, and as the command line spells it
            chosen = Thresholds.load(path, asked)
            assert chosen.budget == budget and np.array_equal(chosen.eta, eta) and chosen.sizes == (32, 48)
    names = ", ".join(format_macs(b) for b in budgets)
    with pytest.raises(ValueError, match=rf"report.json holds 2 threshold sets \(budgets: {names}\); choose one by"):
        Thresholds.load(path)
    with pytest.raises(ValueError, match=rf"no thresholds for budget 1.00G MACs in .*report.json \(budgets there: "
                                         rf"{names}\)"):
        Thresholds.load(path, "1G")
    front = {"results": [{k: v for k, v in row.items() if k not in ("validation", "test", "geometric")}
                         for row in report["results"]]}  # a threshold_search Front written as JSON
    assert np.array_equal(Thresholds.from_json(json.dumps(front), budgets[1]).eta, _etas(report)[1])


def test_one_set_files_still_read_alone_and_check_a_budget_given():
    th = Thresholds([[0.5, 0.25]], budget=2e8)
    assert Thresholds.from_json(th.to_json()).to_dict() == th.to_dict()
    assert Thresholds.from_json(th.to_json(), "200M").to_dict() == th.to_dict()
    with pytest.raises(ValueError, match=r"no thresholds for budget 300.00M MACs .*\(budgets there: 200.00M\)"):
        Thresholds.from_json(th.to_json(), 3e8)
    with pytest.raises(ValueError, match="the search report lists no results"):
        Thresholds.from_json('{"results": []}')
    for text in ('{"budget": 1e9}', "[1, 2]", '{"results": "none"}'):
        with pytest.raises(ValueError, match="not a thresholds file; expected"):
            Thresholds.from_json(text)
    with pytest.raises(ValueError, match=r"results\[0\]: result has no 'budget'"):
        Thresholds.from_json('{"results": [{"thresholds": [[0.5]]}]}')
    with pytest.raises(ValueError, match="budget: cannot parse"):
        Thresholds.from_json(th.to_json(), "lots")

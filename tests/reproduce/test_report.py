"""The report writer: synthsigns.md + .json + the curves plot, from a hand-built report."""
import json

import pytest

from msgf.reproduce import claims, report


def test_writes_markdown_json_and_plot_with_every_claim(hand_report, tmp_path):
    paths = report.write_report(hand_report, tmp_path)
    assert [p.name for p in paths] == ["synthsigns.json", "synthsigns.md", "synthsigns_curves.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    data = json.loads(paths[0].read_text())
    assert [c["name"] for c in data["claims"]] == list(claims.NAMES)
    assert all({"name", "passed", "value", "target"} <= set(c) for c in data["claims"])
    assert [c["passed"] for c in data["claims"]] == [True, False, True, False, True]
    assert data["saving"]["ms_gfnet_macs"] == pytest.approx(14e6)  # every number is kept
    md = paths[1].read_text()
    for claim in data["claims"]:
        assert sum(line.startswith(f"- **{claim['verdict']}** {claim['name']}:") for line in md.splitlines()) == 1
    assert "**2 of 5 claims fail here: learned pi >= random + 10 points; contrastive >= increments at t=2.**" in md
    assert "measured +6.0 points, 95% CI [+4.5, +7.5] points (target >= +10.0 points" in md
    assert "measured 95.0x, 95% CI of (MS-GFNet at a tenth of the MACs - static) [+3.6, +6.4] points (target >= 10x" in md
    assert "confidence - entropy [+0.2, +0.8] points; entropy - random" in md
    assert "![accuracy vs MACs](synthsigns_curves.png)" in md


def test_all_passing_says_so_and_inconclusive_claims_are_named(hand_report, tmp_path):
    right = [1.0] * 900 + [0.0] * 100
    ten_points_below = [0.0] * 50 + [1.0] * 800 + [0.0] * 150  # +-1.9 points of noise around +10
    hand_report["claims"][1] = claims.policy_vs_random([right], [ten_points_below]).to_dict()
    hand_report["claims"][3] = claims.reward(right, right).to_dict()
    md = report.markdown(hand_report)
    assert "**1 of 5 claims is inconclusive here: learned pi >= random + 10 points.**" in md
    assert "- **INCONCLUSIVE** learned pi >= random + 10 points: measured +10.0 points" in md
    hand_report["claims"][1] = claims.policy_vs_random([right], [[0.0] * 1000]).to_dict()
    md = report.markdown(hand_report)
    assert "All 5 claims pass here." in md and md.count("- **PASS** ") == 5
    hand_report["claims"][4] = claims.saving(1.33e9, None, right, right).to_dict()
    hand_report["saving"].update(ms_gfnet_macs=None, ratio=None)
    md = report.markdown(hand_report)
    assert "- **PASS** MACs saving >= 10x at equal accuracy: measured not reached" in md
    hand_report["claims"][4] = claims.saving(1.33e9, None).to_dict()
    md = report.markdown(hand_report)
    assert "- **FAIL** MACs saving >= 10x at equal accuracy: measured not reached" in md
    assert "MS-GFNet never reaches the accuracy of static-960x1280" in md


def test_a_report_written_before_verdicts_still_renders(hand_report):
    for claim in hand_report["claims"]:
        del claim["verdict"], claim["interval"]
    md = report.markdown(hand_report)
    assert "- **FAIL** learned pi >= random + 10 points: measured +6.0 points (target" in md


def test_a_baseline_at_the_majority_class_is_called_out(hand_report):
    assert not report.caveats(hand_report)
    for entry in hand_report["static"]:
        entry["test_accuracy"] = 0.505
    assert any("no better than always answering the majority class" in c for c in report.caveats(hand_report))


def test_hand_written_notes_are_included_verbatim(hand_report, tmp_path):
    report.write_report(hand_report, tmp_path)
    assert "No hand-written note yet" in (tmp_path / "synthsigns.md").read_text()
    (tmp_path / "synthsigns.notes.md").write_text("We tried a 192 px glance.\n")
    report.write_report(hand_report, tmp_path)
    assert "We tried a 192 px glance." in (tmp_path / "synthsigns.md").read_text()


def test_a_report_missing_a_claim_is_refused(hand_report, tmp_path):
    hand_report["claims"] = hand_report["claims"][:4]
    with pytest.raises(ValueError, match="MACs saving"):
        report.write_report(hand_report, tmp_path)
    assert not (tmp_path / "synthsigns.md").exists()


def test_json_has_no_infinities(hand_report, tmp_path):
    hand_report["saving"]["ratio"] = float("inf")
    report.write_report(hand_report, tmp_path)
    assert json.loads((tmp_path / "synthsigns.json").read_text())["saving"]["ratio"] is None


def test_the_reward_section_names_the_runs_it_compares(hand_report):
    assert "MS-GFNet's own stage II and run ms-increments: both from the same stage-I checkpoint" in \
        report.markdown(hand_report)
    hand_report["reward_runs"] = {"contrastive": "ms-contrastive", "increments": "ms-increments"}
    md = report.markdown(hand_report)
    assert "runs ms-contrastive and ms-increments: both from the same stage-I checkpoint" in md
    assert "The preset's own stage II trains nothing" in md


def test_the_processes_line_speaks_only_for_this_invocation(hand_report):
    assert "this invocation ran in one process of 1 torch thread(s); the models it reused from earlier " \
        "invocations (1) may have trained otherwise" in \
        report.markdown(hand_report)
    hand_report["reused"] = []
    assert "2 CPUs; training ran in one process of 1 torch thread(s)." in report.markdown(hand_report)

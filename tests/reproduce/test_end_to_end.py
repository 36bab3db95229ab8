"""`msgf reproduce --preset tiny` end to end (minutes), two models at a time, then again in one
process from the cached models."""
import json

import pytest

from msgf import cli
from msgf.reproduce import claims


@pytest.mark.slow
def test_tiny_preset_end_to_end_and_resumed(tmp_path, capfd):
    workdir = tmp_path / "work"
    assert cli.main(["reproduce", "--preset", "tiny", "--workdir", str(workdir), "--no-progress", "--jobs", "2"]) == 0
    for name in ("synthsigns.md", "synthsigns.json", "synthsigns_curves.png", "synthsigns_scenes.png"):
        assert (workdir / name).stat().st_size > 0, name  # tiny reports into its workdir
    report = json.loads((workdir / "synthsigns.json").read_text())
    assert [c["name"] for c in report["claims"]] == [claims.NAMES[0], claims.MS_VS_FIXED_EQUAL_PRESENTATION,
                                                     *claims.NAMES[1:]]
    runs = [r["name"] for r in report["plan"]["gfnet_runs"]] + [s["name"] for s in report["plan"]["static"]]
    assert len(runs) == 9 and all((workdir / name / "done.json").exists() for name in runs)
    assert report["reused"] == [] and report["environment"]["training_jobs"] == 2
    fixed = json.loads((workdir / "fixed-48" / "summary.json").read_text())
    assert fixed["stages"] == [1, 2, 3] and "ms/stage0.ckpt" in capfd.readouterr().out  # ms's backbone
    budgets = report["budgets"]
    assert len(budgets) >= 6 and all(len(rows) == len(budgets) for rows in report["sweeps"].values())
    assert set(report["sweeps"]) == {"ms", "ms-equal-presentation", "fixed-48", "fixed-64"}
    pooled = [s for s in report["static"] if s["kind"] == "pooled"]
    assert len(pooled) == 1 and pooled[0]["train_samples"] == 64 and "counts_for_saving" in pooled[0]
    md = (workdir / "synthsigns.md").read_text()
    assert sum(line.startswith(("- **PASS**", "- **FAIL**", "- **INCONCLUSIVE**")) for line in md.splitlines()) == 6
    assert all(c["verdict"] in claims.VERDICTS for c in report["claims"])
    # every claim but the saving has its paired interval; no tiny static baseline learns enough to count
    assert all(c["interval"] for c in report["claims"][:-1]) and report["claims"][-1]["interval"] is None
    errors = report["error_budget"]
    assert set(errors["sizes"]) == {"48", "64"} and "thresholds" in errors
    assert "## 7. Where MS-GFNet's errors come from" in md

    assert cli.main(["reproduce", "--preset", "tiny", "--workdir", str(workdir), "--no-progress",
                     "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "synthsigns.json").read_text())
    assert sorted(again["reused"]) == sorted(runs)
    assert again["claims"] == report["claims"]

    def scores(sweeps):  # all but the search's own timings
        return {name: [(r["budget"], r["val_accuracy"], r["test_accuracy"], r["test_macs"], r["result"]["thresholds"])
                       for r in rows] for name, rows in sweeps.items()}

    assert scores(again["sweeps"]) == scores(report["sweeps"])
    assert "reused" in capfd.readouterr().out

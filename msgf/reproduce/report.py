"""The results report: OUT/synthsigns.json (every number), OUT/synthsigns.md (tables, plots,
a verdict per claim) and the accuracy-vs-MACs plot beside them.

Everything in the markdown is generated from the JSON. The one hand-written part is optional:
a file OUT/synthsigns.notes.md, if present, is included verbatim as the closing note (what was
tried where a claim fails); regenerating the report keeps it.
"""
from __future__ import annotations

import json
from pathlib import Path

from msgf.atomic import atomic_write
from msgf.jsonable import jsonable
from msgf.reproduce.claims import NAMES
from threshold_search import format_macs

REPORT_NAME = "synthsigns"
CLOSE_TO_MAJORITY = 0.01  # within 1 point of always answering the majority class: learned nothing


def write_report(report: dict, out: str | Path) -> list[Path]:
    """Write OUT/synthsigns.{json,md} and OUT/synthsigns_curves.png; the paths written."""
    from msgf.reproduce import figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [name for name in NAMES if name not in {c["name"] for c in report.get("claims", [])}]
    if missing:
        raise ValueError(f"report: claims {missing} are missing")
    paths = [out / f"{REPORT_NAME}.json", out / f"{REPORT_NAME}.md", out / f"{REPORT_NAME}_curves.png"]
    curves, static = curve_points(report)
    figures.curves(paths[2], curves, static, dashed=(RANDOM_LABEL,),
                   title=f"preset {report['preset']}: test accuracy, thresholds searched on validation")
    notes = out / f"{REPORT_NAME}.notes.md"
    with atomic_write(paths[0], "w") as file:
        json.dump(jsonable(report), file, indent=2, allow_nan=False)
        file.write("\n")
    with atomic_write(paths[1], "w") as file:
        file.write(markdown(report, notes.read_text() if notes.exists() else None))
    return paths


RANDOM_LABEL = "MS-GFNet, random locations"
CURVE_LABELS = {"ms": "MS-GFNet", "ms-equal-presentation": "MS-GFNet, equal patch presentations"}


def curve_points(report: dict) -> tuple[dict, dict]:
    """(GFNet label -> [(test MACs, test accuracy)], static label -> (MACs, accuracy)); every
    GFNet curve starts at its glance-only point."""
    curves = {}
    for name, rows in report["sweeps"].items():
        label = CURVE_LABELS.get(name) or f"GFNet {name.removeprefix('fixed-')} px"
        glance = report["glance"][name]
        curves[label] = [(glance["macs"], glance["accuracy"])] + [(r["test_macs"], r["test_accuracy"]) for r in rows]
    glance = report["glance"]["ms"]
    curves[RANDOM_LABEL] = [(glance["macs"], glance["accuracy"])] + \
        [(r["test_macs"], r["test_accuracy"]) for r in report["policy_ablation"]["random_locations"]]
    static = {s["name"].replace("-", " ", 1): (s["macs"], s["test_accuracy"]) for s in report["static"]}
    return curves, static


# ------------------------------------------------------------------------------ markdown

def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _points(value) -> str:
    return "-" if value is None else f"{100 * value:+.1f} points"


def _claim_value(claim: dict) -> str:
    value = claim["value"]
    if value is None:
        return "not reached"
    if claim["name"] == NAMES[2]:
        return ", ".join(f"{k} {_pct(v)}%" for k, v in value.items())
    if claim["name"] == NAMES[4]:
        return f"{value:.1f}x"
    return _points(value)


def _claim_target(claim: dict) -> str:
    target = claim["target"]
    if isinstance(target, str):
        return target
    if claim["name"] == NAMES[4]:
        return f">= {target:g}x"
    return f">= {_points(target)}"


def _interval(claim: dict) -> str:
    """The 95% interval(s) the verdict rests on, in points."""
    interval = claim.get("interval")
    if not interval:
        return ""

    def span(pair) -> str:
        return f"[{100 * pair[0]:+.1f}, {100 * pair[1]:+.1f}] points"

    if isinstance(interval, dict):
        return ", 95% CI " + "; ".join(f"{name} {span(pair)}" for name, pair in interval.items())
    if claim["name"] == NAMES[4]:
        return f", 95% CI of (MS-GFNet at a tenth of the MACs - static) {span(interval)}"
    return f", 95% CI {span(interval)}"


def _verdict(claim: dict) -> str:
    # reports written before verdicts existed carry only `passed`
    return claim.get("verdict") or ("PASS" if claim["passed"] else "FAIL")


def claim_lines(claims: list[dict]) -> list[str]:
    """One line per claim: PASS/FAIL/INCONCLUSIVE, the claim, measured value with its paired 95%
    interval, target and how it was measured."""
    return [f"- **{_verdict(c)}** {c['name']}: measured {_claim_value(c)}{_interval(c)} "
            f"(target {_claim_target(c)}; {c['detail']})" for c in claims]


def claims_summary(claims: list[dict]) -> str:
    """One line: how many claims pass, fail and are inconclusive, naming the latter two."""
    named = {v: [c["name"] for c in claims if _verdict(c) == v] for v in ("FAIL", "INCONCLUSIVE")}
    if not any(named.values()):
        return f"All {len(claims)} claims pass here."
    verbs = {"FAIL": ("fails", "fail"), "INCONCLUSIVE": ("is inconclusive", "are inconclusive")}
    parts = [f"{len(names)} of {len(claims)} claims {verbs[v][len(names) > 1]} here: " + "; ".join(names)
             for v, names in named.items() if names]
    return "**" + ".** **".join(parts) + ".**"


def caveats(report: dict) -> list[str]:
    """Plain statements the numbers force, e.g. a baseline that learned nothing."""
    majority = report["majority_accuracy"]
    lines = []
    best = max(report["static"], key=lambda s: s["test_accuracy"])
    if best["test_accuracy"] <= majority + CLOSE_TO_MAJORITY:
        lines.append(f"The most accurate static baseline ({best['name']}, {_pct(best['test_accuracy'])}%) is no better "
                     f"than always answering the majority class ({_pct(majority)}%): the compute-saving comparison "
                     f"is against a baseline that learned nothing here, so it says little.")
    ms_best = max([report["glance"]["ms"]["accuracy"]] + [r["test_accuracy"] for r in report["sweeps"]["ms"]])
    if ms_best <= majority + CLOSE_TO_MAJORITY:
        lines.append(f"MS-GFNet's best test accuracy ({_pct(ms_best)}%) is no better than the majority class "
                     f"({_pct(majority)}%): the comparisons between GFNet variants compare models that learned "
                     f"nothing, and their passes and failures are noise.")
    return lines + list(report.get("notes", []))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _setup(report: dict) -> str:
    cfg = report["configs"]["ms"]
    data = cfg["data"]
    h, w = data["image_size"] or ("?", "?")
    return (f"{h}x{w} built-in speed-limit scenes (`synthsigns`, 4 classes, half EMPTY), {cfg['backbone']}, "
            f"glance {cfg['glance_size']} px, focus patches {'/'.join(map(str, cfg['patch_sizes']))} px, T={cfg['T']}; "
            f"{data['train_samples']} training / {data['val_samples']} validation / {data['test_samples']} test "
            f"scenes, seed {cfg['seed']}. Always answering the majority class scores "
            f"{_pct(report['majority_accuracy'])}% on test.")


def markdown(report: dict, notes: str | None = None) -> str:
    minutes = report["wall_seconds"] / 60
    trained = sum(report["training_seconds"].values()) / 60
    lines = [
        f"# Reproducing the paper's claims on the built-in scenes (preset `{report['preset']}`)",
        "",
        f"Generated by `{report['command']}` (started {report['started']}, {minutes:.1f} min; model training "
        f"{trained:.1f} min in all{', some of it in earlier invocations' if report['reused'] else ''}). Every "
        f"number, table and verdict below is computed from the runs in `{report['workdir']}`; "
        f"`{REPORT_NAME}.json` holds them all.",
        "",
        _setup(report),
        "",
        "## Claims",
        "",
        "A verdict rests on the paired 95% interval of the scenes both models classify (msgf.reproduce.claims): "
        "PASS when all of it meets the target, FAIL when none of it does, INCONCLUSIVE when it spans the target.",
        "",
        *claim_lines(report["claims"]),
        "",
        claims_summary(report["claims"]),
        "",
    ]
    for caveat in caveats(report):
        lines += [f"> {caveat}", ""]
    lines += _static_section(report) + _budget_section(report) + _policy_section(report) + \
        _criteria_section(report) + _reward_section(report) + _saving_section(report) + _errors_section(report) + \
        _scenes_section(report) + \
        _runs_section(report)
    lines += ["## Closing note", ""]
    if notes:
        lines += [f"(hand-written, from `{REPORT_NAME}.notes.md`)", "", notes.strip(), ""]
    else:
        lines += [f"No hand-written note yet. Where a claim fails, `{REPORT_NAME}.notes.md` beside this file should "
                  "say what was tried; rerunning the command includes it here.", ""]
    return "\n".join(lines)


STATIC_DESIGNS = {
    "scratch": "the GFNet's backbone from random weights, trained end to end on the whole scene resized",
    "pooled": "MS-GFNet's stage-0 f_L (frozen) on the whole scene resized, its FC_2 head applied at every cell of "
              "the last feature map and log-sum-exp pooled over the cells, the head fine-tuned on cached maps "
              "(msgf.reproduce.pooled explains why this is a fair static reference)",
}


def _static_section(report: dict) -> list[str]:
    margin = report["saving"].get("qualifying_margin")
    rows = []
    for s in report["static"]:
        zero_shot = s.get("zero_shot_val_accuracy")
        counts = s.get("counts_for_saving")
        rows.append([f"{s['size'][0]}x{s['size'][1]}", s.get("kind", "scratch"),
                     f"{s['epochs']} (best {s['best_epoch'] + 1})", format_macs(s["macs"]),
                     "-" if zero_shot is None else _pct(zero_shot), _pct(s["val_accuracy"]), _pct(s["test_accuracy"]),
                     "-" if counts is None else ("yes" if counts else "no"), f"{s['seconds'] / 60:.1f} min"])
    kinds = sorted({s.get("kind", "scratch") for s in report["static"]})
    lines = ["## 1. Static baselines (the whole scene resized, one pass)", ""]
    lines += [f"- {kind}: {STATIC_DESIGNS[kind]}." for kind in kinds] + [""]
    if margin is not None:
        lines += [f"A baseline counts for the compute-saving claim only if its test accuracy is at least "
                  f"{margin * 100:.0f} points above the majority class's ({_pct(report['majority_accuracy'])}%). "
                  "Best epoch 0: the weights it started from (no epoch beat them on validation).", ""]
    return lines + _table(["input", "kind", "epochs", "MACs/image", "zero-shot val acc %", "val acc %", "test acc %",
                           "counts for saving", "training"], rows)


def _budget_section(report: dict) -> list[str]:
    names = list(report["sweeps"])
    header = ["budget"] + [CURVE_LABELS.get(n, n) + " test acc % (MACs)" for n in names]
    glance = ["glance only"] + [f"{_pct(report['glance'][n]['accuracy'])} ({format_macs(report['glance'][n]['macs'])})"
                                for n in names]
    rows = [glance] + [[format_macs(b)] + [f"{_pct(report['sweeps'][n][i]['test_accuracy'])} "
                                           f"({format_macs(report['sweeps'][n][i]['test_macs'])})" for n in names]
                       for i, b in enumerate(report["budgets"])]
    method = report["plan"]["search_method"]
    return ["## 2. GFNet with one patch size vs MS-GFNet at equal budgets (paper Table 3)", "",
            f"Thresholds searched ({method}, confidence criterion) on validation for each budget (average MACs per "
            "image), applied unchanged to test; test MACs can drift from the budget.", "",
            f"![accuracy vs MACs]({REPORT_NAME}_curves.png)", "", *_table(header, rows)]


def _steps(values) -> str:
    return " / ".join(_pct(v) for v in values)


def _policy_section(report: dict) -> list[str]:
    ablation = report["policy_ablation"]
    rows = [[format_macs(b), _pct(p["test_accuracy"]), _pct(r["test_accuracy"]),
             _points(p["test_accuracy"] - r["test_accuracy"])]
            for b, p, r in zip(report["budgets"], report["sweeps"]["ms"], ablation["random_locations"])]
    return ["## 3. Learned pi vs random locations (paper Table 4, random-patch row)", "",
            "The same MS-GFNet with its focus patches at uniformly random locations (trajectories exported with "
            f"seed {ablation['random_seed']}), thresholds searched on its own validation trajectories. Costs are "
            "counted alike (pi's MACs included), so the budgets match.", "",
            *_table(["budget", "learned pi test acc %", "random locations test acc %", "difference"], rows),
            "Without exits (every step run, mean over patch sizes), final model, test split: accuracy at t=1..T "
            f"{_steps(ablation['accuracy_policy'])}% with pi vs {_steps(ablation['accuracy_random'])}% random; "
            f"hit rate on the sign boxes per focus step {_steps(ablation['hit_rate_policy'])}% with pi vs "
            f"{_steps(ablation['hit_rate_random'])}% random.", ""]


def _criteria_section(report: dict) -> list[str]:
    criteria = report["criteria"]
    rows = [[format_macs(b)] + [_pct(criteria[c][i]["test_accuracy"]) for c in ("confidence", "entropy", "random")]
            for i, b in enumerate(report["budgets"])]
    return ["## 4. Exit criterion (paper Table 7)", "",
            "MS-GFNet's trajectories, thresholds searched per criterion at the same budgets.", "",
            *_table(["budget", "confidence test acc %", "entropy test acc %", "random exit test acc %"], rows)]


def _reward_section(report: dict) -> list[str]:
    reward = report["reward"]
    T = len(reward["contrastive"]["accuracy_policy"])
    rows = [[name, *(_pct(v) for v in r["accuracy_policy"]), *(_pct(v) for v in r["hit_rate_policy"])]
            for name, r in reward.items()]
    rows.append(["(random locations)", *(_pct(v) for v in reward["contrastive"]["accuracy_random"]),
                 *(_pct(v) for v in reward["contrastive"]["hit_rate_random"])])
    header = ["stage II reward"] + [f"acc t={t} %" for t in range(1, T + 1)] + \
        [f"hit rate t={t} %" for t in range(2, T + 1)]
    runs = report.get("reward_runs", {"contrastive": "ms", "increments": "ms-increments"})
    source = ("MS-GFNet's own stage II and run " if runs["contrastive"] == "ms" else
              f"runs {runs['contrastive']} and ") + runs["increments"]
    own = "" if runs["contrastive"] == "ms" else (
        " The preset's own stage II trains nothing, so both rewards train stage II here, each keeping its last "
        "epoch.")
    return ["## 5. Reward: contrastive vs increments after stage II (paper Table 2)", "",
            f"{source}: both from the same stage-I checkpoint, same epochs; test split, pi's locations, every step "
            f"run, mean over patch sizes.{own}", "", *_table(header, rows)]


def _saving_section(report: dict) -> list[str]:
    saving, speed = report["saving"], report["throughput"]
    lines = ["## 6. Compute saving at the best static baseline's accuracy", ""]
    if saving["ms_gfnet_macs"] is None:
        best_ms = max(saving["front"], key=lambda p: p[1])
        lines.append(f"MS-GFNet never reaches the accuracy of {saving['best_static']} "
                     f"({_pct(saving['static_accuracy'])}% at {format_macs(saving['static_macs'])} MACs): its best "
                     f"test accuracy is {_pct(best_ms[1])}% at {format_macs(best_ms[0])} MACs. "
                     "No saving can be claimed.")
    else:
        lines.append(f"{saving['best_static']} reaches {_pct(saving['static_accuracy'])}% at "
                     f"{format_macs(saving['static_macs'])} MACs per image; MS-GFNet's test front reaches that "
                     f"accuracy at {format_macs(saving['ms_gfnet_macs'])} MACs (interpolated between measured points): "
                     f"**{saving['ratio']:.1f}x** fewer MACs.")
    s, g = speed["static"], speed["ms_gfnet"]
    lines += ["", f"CPU throughput on {speed['images']} test scenes, one thread, median of {s['repeats']} timed passes "
              f"(MS-GFNet with the thresholds of its operating point: {speed['operating_point']}; the resize of the "
              "full scene is included for both):", "",
              *_table(["model", "MACs/image", "images/s"],
                      [[s["name"], format_macs(s["macs"]), f"{s['images_per_second']:.2f}"],
                       ["MS-GFNet", format_macs(g["mean_macs"]), f"{g['images_per_second']:.2f}"]]),
              f"MS-GFNet runs {speed['speedup']:.2f}x as many images per second as the static model.", ""]
    return lines


def _errors_section(report: dict) -> list[str]:
    errors = report.get("error_budget")
    if not errors:
        return []
    from msgf.engine.error_budget import BUCKET_TITLES, format_markdown

    return ["## 7. Where MS-GFNet's errors come from (error budget, test split)", "",
            "`msgf error-budget` of the final MS-GFNet: every focus step at one patch size, then at the thresholds "
            "of the budget the saving is judged at. A sign scene is covered when the centre of its sign lies in a "
            "focus patch; read when the step that first covers it predicts the right class (f_C, or the patch "
            "alone through FC_2). Error buckets: " + "; ".join(BUCKET_TITLES.values()) + ". The last two columns "
            "are oracle bounds: the accuracy if every sign were covered, and if every covered sign were read.", "",
            format_markdown(errors), ""]


def _scenes_section(report: dict) -> list[str]:
    grid = report.get("scene_grid")
    if not grid:
        return []
    return ["## Where MS-GFNet looks (paper Figure 12)", "",
            f"Test scenes with the glance and each focus patch (thresholds of the largest budget, "
            f"{format_macs(grid['budget'])}); titles and boxes green where the prediction after that step is right, "
            "red where it is wrong.", "", f"![test scenes]({REPORT_NAME}_scenes.png)", ""]


def _runs_section(report: dict) -> list[str]:
    rows = []
    for spec in report["plan"]["gfnet_runs"]:
        name = spec["name"]
        changes = {k: v for k, v in spec["overrides"].items() if k != "seed"}
        rows.append([name, ",".join(map(str, spec["stages"])), spec["init"] or "-",
                     ", ".join(f"{k}={v}" for k, v in changes.items()) or "(the preset as is)",
                     f"{report['training_seconds'][name] / 60:.1f} min"])
    env = report["environment"]
    return ["## What was run", "",
            f"Training preset `{report['plan']['train_preset']}` (msgf.train.presets) with these overrides; the "
            f"static baselines use its {_static_optimiser(report)} optimiser settings. Models in "
            f"`{report['workdir']}`.", "",
            *_table(["run", "stages", "init", "overrides", "training"], rows),
            f"Budgets: {', '.join(format_macs(b) for b in report['budgets'])}. torch {env['torch']}, "
            f"{env['cpu_count']} CPUs; {_training_processes(report)}.", ""]


def _static_optimiser(report: dict) -> str:
    # "pooled" baselines fine-tune a classifier head, as stage I does; "scratch" ones a backbone
    kinds = {s.get("kind", "scratch") for s in report["static"]}
    return " and ".join(name for kind, name in (("scratch", "stage-0"), ("pooled", "stage-I classifier"))
                        if kind in kinds)


def _training_processes(report: dict) -> str:
    # the environment is this invocation's: it says nothing of how reused models were trained
    env = report["environment"]
    if report["reused"]:
        return (f"this invocation ran {_processes(env)}; the models it reused from earlier invocations "
                f"({len(report['reused'])}) may have trained otherwise (each run's done.json has its wall time)")
    return f"training ran {_processes(env)}"


def _processes(env: dict) -> str:
    jobs = env.get("training_jobs", 1)  # reports written before --jobs existed ran one process
    threads = env.get("training_threads_per_job", env["torch_threads"])
    return f"in one process of {threads} torch thread(s)" if jobs == 1 else \
        f"{jobs} models at a time, in processes of {threads} torch thread(s) each"

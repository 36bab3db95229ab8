"""Where the PyTorch path spends its time and memory (issue 29), at batch 1, 8 and 32.

Workload as the throughput of benchmarks/deploy.py: a checkpoint (--ckpt; default an untrained
model of the cpu-demo shape, which costs the same compute), built-in 960x1280 test scenes,
decoded, thresholds at the terciles of each step's confidences (deploy.spread_thresholds), 2
threads, `msgf.Predictor.predict` on each batch.

Time per image, by phase (medians over rounds; phases are timed by wrapping the model's parts,
so each is charged what it ran):
- decode: Pillow decoding the same scenes written as JPEG (quality 90), what `msgf infer` adds;
- glance: the antialiased resize of the whole image (msgf.ops.glance); f_G: the global encoder;
- per focus step t: pi (the policy, run before the crop), crop (msgf.ops.crop_resize), f_L;
- f_C: the classifier, all steps;
- engine bookkeeping: the rest of `predict_from` (exit rule, selecting who goes on, records);
- predictor: the rest of `Predictor.predict` (stacking the batch, results, returning memory).

Also torch.profiler's heaviest operators (self CPU time) at each batch, and a memory trace: in a
fresh process per batch size, resident memory after `import torch`, after the model is loaded,
and its peak while predicting, with the phase that reached each new high.

    python benchmarks/profile_torch.py --ckpt runs/base/model.ckpt --label before
    python benchmarks/profile_torch.py --quick                      # checks the script runs

Writes benchmarks/results/profile_torch-<label>.json and .md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from deploy import scenes, spread_thresholds  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCHES = (1, 8, 32)


def load_model(ckpt: str | None):
    import torch

    import msgf

    if ckpt:
        return msgf.load_checkpoint(ckpt)
    torch.manual_seed(0)
    return msgf.build_model("efficientnet_lite0", 4, 256, (64, 128), 4, pretrained=True, policy_head="spatial",
                            map_stride=16, policy_inhibition=100.0).eval()


def resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PhaseClock:
    """Wall time (and, with `memory`, the resident-memory high after each phase) of the parts of
    one predictor, by wrapping its model's step API and module forwards."""

    def __init__(self, predictor, memory: bool = False):
        import msgf.infer.predictor as predictor_module
        from msgf import ops

        self.seconds: dict[str, float] = defaultdict(float)
        self.memory = memory
        self.high: dict[str, float] = {}
        self.step = 1
        self._undo = []
        model = predictor.model
        self._wrap(ops, "glance", lambda: "glance")
        self._wrap(ops, "crop_resize", lambda: f"t={self.step} crop")
        self._wrap(predictor_module, "predict_from", lambda: "engine")
        for name, module in (("f_G", model.global_encoder), ("f_L", model.local_encoder), ("f_C", model.classifier),
                             ("pi", model.policy)):
            per_step = name in ("f_L", "pi")
            self._hook(module, (lambda n=name: f"t={self.step} {n}") if per_step else (lambda n=name: n))
        for method in ("propose", "focus"):
            original = getattr(model, method)

            def at_next_step(state, *args, _original=original, **kwargs):
                self.step = state.step + 1
                return _original(state, *args, **kwargs)

            setattr(model, method, at_next_step)
            self._undo.append(lambda m=method: delattr(model, m))

    def _record(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds
        if self.memory:
            now = resident_mb()
            if now > max(self.high.values(), default=0.0):
                self.high[label] = now

    def _wrap(self, owner, name: str, label) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._record(label(), time.perf_counter() - start)

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def _hook(self, module, label) -> None:
        starts = []
        pre = module.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))
        post = module.register_forward_hook(lambda m, a, o: self._record(label(), time.perf_counter() - starts.pop()))
        self._undo += [pre.remove, post.remove]

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()


def phases(clock: PhaseClock, total: float) -> dict[str, float]:
    """Exclusive seconds per phase: the engine's bookkeeping and the predictor's rest by difference."""
    s = dict(clock.seconds)
    engine = s.pop("engine", 0.0)
    inside = sum(s.values())
    return {**s, "engine bookkeeping": engine - inside, "predictor": total - engine}


def decode_seconds(images: list[np.ndarray]) -> float:
    """Seconds per image to decode these images written as JPEG (quality 90), as msgf infer reads them."""
    from PIL import Image

    files = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    start = time.perf_counter()
    for data in files:
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return (time.perf_counter() - start) / len(files)


def time_phases(predictor, images: list[np.ndarray], batch: int, rounds: int) -> dict:
    """Median per-image seconds of each phase over `rounds` passes over `images` at `batch`."""
    batches = [np.stack(images[k:k + batch]) for k in range(0, len(images) - batch + 1, batch)]
    count = len(batches) * batch
    predictor.predict(batches[0])  # warm-up: oneDNN primitives for this batch shape
    per_round = []
    for _ in range(rounds):
        clock = PhaseClock(predictor)
        start = time.perf_counter()
        for b in batches:
            predictor.predict(b)
        total = time.perf_counter() - start
        clock.remove()
        per_round.append({"total": total, **phases(clock, total)})
    keys = sorted({k for r in per_round for k in r})
    return {k: float(np.median([r.get(k, 0.0) for r in per_round])) / count for k in keys}


def top_operators(predictor, images: list[np.ndarray], batch: int, rows: int = 12) -> list[dict]:
    """torch.profiler's heaviest operators by self CPU time over one pass at `batch`."""
    from torch.profiler import ProfilerActivity, profile

    batches = [np.stack(images[k:k + batch]) for k in range(0, len(images) - batch + 1, batch)]
    predictor.predict(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            predictor.predict(b)
    count = len(batches) * batch
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [{"op": e.key, "calls_per_image": e.count / count, "self_ms_per_image": e.self_cpu_time_total / 1e3 / count}
            for e in events]


MEMORY_CHILD = r"""
import json, resource, sys
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import torch
after_torch = peak()
sys.path.insert(0, sys.argv[1])
import numpy as np
from profile_torch import PhaseClock, load_model, scenes, spread_thresholds
from msgf.infer import Predictor
torch.set_num_threads(2)
model = load_model(sys.argv[2] or None)
loaded = peak()
images = scenes(int(sys.argv[4]), (960, 1280))
predictor = Predictor(model, thresholds=spread_thresholds(model, images[:8]))
with_inputs = peak()
batch = int(sys.argv[3])
clock = PhaseClock(predictor, memory=True)
for k in range(0, len(images) - batch + 1, batch):
    predictor.predict(np.stack(images[k:k + batch]))
print(json.dumps({"import_torch_mb": after_torch, "model_loaded_mb": loaded, "with_inputs_mb": with_inputs,
                  "peak_mb": peak(), "phase_highs_mb": clock.high}))
"""


# A process forked from this one starts with this one's peak as its own (Linux keeps the
# high-water mark across exec), so the measuring process is started by a small one in between.
LAUNCH = "import json, subprocess, sys; sys.exit(subprocess.run(json.loads(sys.argv[1])).returncode)"


def memory_trace(ckpt: str | None, batch: int, count: int) -> dict:
    """Resident memory of a fresh process predicting `count` scenes at `batch` (see MEMORY_CHILD):
    peaks after `import torch`, after loading the model, after rendering the scenes it holds
    (3.7 MB each), and while predicting."""
    child = [sys.executable, "-c", MEMORY_CHILD, str(Path(__file__).parent), ckpt or "", str(batch), str(count)]
    done = subprocess.run([sys.executable, "-c", LAUNCH, json.dumps(child)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint (default: an untrained model of the cpu-demo shape)")
    parser.add_argument("--label", default="current", help="names the result files (e.g. before / after)")
    parser.add_argument("--scenes", type=int, default=64, help="held-out scenes per pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a few scenes, one round: checks the script runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    from msgf.infer import Predictor

    if args.quick:
        args.scenes, args.rounds = 32, 1
    torch.set_num_threads(2)
    load_before = os.getloadavg()
    model = load_model(args.ckpt)
    images = scenes(args.scenes + 8, (960, 1280))
    predictor = Predictor(model, thresholds=spread_thresholds(model, images[:8]))
    held_out = images[8:]
    report = {"label": args.label, "checkpoint": args.ckpt or "untrained cpu-demo shape", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "scenes": len(held_out), "rounds": args.rounds,
              "decode_s_per_image": decode_seconds(held_out[:16]), "batches": {}}
    for batch in BATCHES:
        entry = {"phases_s_per_image": time_phases(predictor, held_out, batch, args.rounds),
                 "top_operators": top_operators(predictor, held_out, batch),
                 "memory": memory_trace(args.ckpt, batch, min(args.scenes, 64) + 8)}
        report["batches"][str(batch)] = entry
        print(batch, json.dumps(entry["phases_s_per_image"]), flush=True)
    report["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"profile_torch-{args.label}" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


def _phase_order(name: str) -> tuple:
    fixed = ["total", "glance", "f_G", "f_C"]
    if name in fixed:
        return (0, fixed.index(name), "")
    if name.startswith("t="):
        step, part = name[2:].split(" ", 1)
        return (1, int(step), ["pi", "crop", "f_L"].index(part) if part in ("pi", "crop", "f_L") else 9)
    return (2, 0, name)


def markdown(r: dict) -> str:
    lines = [f"# Where the PyTorch path spends time and memory ({r['label']})", "",
             f"{r['checkpoint']}; {r['scenes']} built-in 960x1280 scenes, decoded; `Predictor.predict`, "
             f"{r['threads']} threads, torch {r['torch']}; medians of {r['rounds']} rounds; 1-min load average "
             f"{r['load_average']['before'][0]:.1f} before, {r['load_average']['after'][0]:.1f} after (the machine "
             f"is shared). JPEG decoding (`msgf infer` only): {r['decode_s_per_image'] * 1e3:.1f} ms per image.", "",
             "## Milliseconds per image, by phase", ""]
    names = sorted({k for b in r["batches"].values() for k in b["phases_s_per_image"]}, key=_phase_order)
    lines += ["| phase | " + " | ".join(f"batch {b}" for b in r["batches"]) + " |",
              "|---|" + "---:|" * len(r["batches"])]
    for name in names:
        cells = [f"{b['phases_s_per_image'].get(name, 0.0) * 1e3:.2f}" for b in r["batches"].values()]
        lines.append(f"| {'**total**' if name == 'total' else name} | " + " | ".join(cells) + " |")
    lines += ["", "Images per second: " + ", ".join(
        f"batch {k} {1 / b['phases_s_per_image']['total']:.1f}" for k, b in r["batches"].items()) + ".", "",
        "## Resident memory (MB), a fresh process per batch size", "",
        "| batch | after `import torch` | model loaded | + the scenes held (floor) | peak while predicting | "
        "above the floor | phase that set each new high |", "|---:|---:|---:|---:|---:|---:|---|"]
    for k, b in r["batches"].items():
        m = b["memory"]
        highs = ", ".join(f"{name} {mb:.0f}" for name, mb in m["phase_highs_mb"].items())
        lines.append(f"| {k} | {m['import_torch_mb']:.0f} | {m['model_loaded_mb']:.0f} | {m['with_inputs_mb']:.0f} | "
                     f"{m['peak_mb']:.0f} | {m['peak_mb'] - m['with_inputs_mb']:.0f} | {highs} |")
    lines += ["", "## Heaviest operators (torch.profiler, self CPU ms per image)", ""]
    for k, b in r["batches"].items():
        lines.append(f"- batch {k}: " + "; ".join(f"`{o['op']}` {o['self_ms_per_image']:.2f} "
                                                  f"({o['calls_per_image']:.1f} calls)" for o in b["top_operators"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

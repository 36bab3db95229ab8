"""`msgf infer`: predictions of a checkpoint on image files at a chosen budget, as JSONL.

Every input is opened as a region reader (msgf.data.regions.open_image): JPEG/PNG are decoded
once, TIFF (tiled, pyramidal, megapixel) is read lazily, the glance from its pyramid and each
focus patch as a region. One JSON line per image, then one summary line. A file that cannot be
read is reported by name and skipped; the exit status is 1 if any was. A batch holds its
decoded JPEG/PNG files at once (TIFFs are never decoded whole): lower --batch for huge JPEGs.

With --runtime onnx, CKPT is a directory written by `msgf export`, run by onnxruntime
(msgf.deploy.OnnxPredictor) without importing torch; the lines are the same (confidences agree to
about 1e-6, see tests/deploy). One process only: --device and torchrun are for the torch runtime.

Under torchrun, each process takes every world-size-th batch and writes its lines to
OUT.part<rank>-of-<size>; rank 0 merges them into --out in input order and writes the one
summary. With the same threads per process, the lines are byte-identical to one process's.

With --out, each batch's lines are written and flushed together, so a killed run leaves whole
batches (and at most one torn line, which --resume drops). --resume keeps the lines already in
--out and computes only the inputs without one, over the same batches as a fresh run: a batch
is always computed whole, so every line is exactly what an uninterrupted run writes.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import time
from pathlib import Path

from msgf.commands._args import add_threshold_arguments
from msgf.commands._args import non_negative_int as _non_negative
from msgf.commands._args import positive_int as _positive


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "infer", help="predict classes of image files with early exits (JSONL, optional figures)",
        description="Classify image files, directories or manifests with a checkpoint at a budget. "
                    "Writes one JSON line per image (file, class, confidence, exit step, patch boxes in "
                    "image pixels, MACs) and a summary line. A file that cannot be read (corrupt, truncated, "
                    "claiming more pixels than msgf's limits, a symlink loop, not a regular file) is "
                    "skipped and named on stderr and in the summary's failed_files. Exit status: 0 if every "
                    "input was read, 1 if any was skipped, 2 for a usage error (checkpoint, thresholds, a "
                    "malformed manifest).")
    parser.add_argument("checkpoint", metavar="CKPT", type=Path,
                        help="checkpoint written by msgf train (with --runtime onnx: a directory written by msgf export)")
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="image files (JPEG, PNG, TIFF incl. tiled/pyramidal), directories, or manifests "
                             "(.csv/.jsonl, whose labels colour --visualize)")
    add_threshold_arguments(parser)
    parser.add_argument("--batch", type=_positive,
                        help="images per batch (default: 32; 8 with --runtime onnx, which is there for a small "
                             "footprint: a batch, and the batch read ahead of it, hold their decoded images)")
    parser.add_argument("--out", type=Path, metavar="JSONL", help="write the lines here (default: stdout)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the lines already in --out and add those of the inputs it lacks")
    parser.add_argument("--visualize", type=Path, metavar="DIR",
                        help="write one PNG of the glance and patches per image")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="torch: the checkpoint in PyTorch; onnx: an `msgf export` directory in onnxruntime, "
                             "without importing torch (default: torch)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--workers", type=_non_negative,
                        help="threads that decode images and read glances ahead of the model; 0 reads in the "
                             "main thread (default: 1 on up to 2 CPUs, else 2)")
    parser.add_argument("--threads", type=_positive,
                        help="torch threads for the model (default: the CPUs left to it beside --workers, at "
                             "least 1; unless OMP_NUM_THREADS is set, as torchrun does)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


# Measured over 1000 960x1280 JPEGs (benchmarks/results/deploy.md): onnxruntime is within a few
# percent of its batch-32 throughput at batch 8, at about half the peak memory.
TORCH_BATCH, ONNX_BATCH = 32, 8


class _OneProcess:
    """The world of a run without torch.distributed (the onnx runtime)."""

    rank, size, is_main, distributed = 0, 1, True, False


def run(args) -> int:
    if args.batch is None:
        args.batch = ONNX_BATCH if args.runtime == "onnx" else TORCH_BATCH
    if args.runtime == "onnx":
        # No torch here: onnxruntime runs the export, and torch's import alone costs ~700 MB of RSS.
        from msgf.memory import map_large_buffers

        map_large_buffers()
        if args.device != "cpu":
            print("msgf infer: error: --device: the onnx runtime runs on the CPU only", file=sys.stderr)
            return 2
        if "LOCAL_RANK" in os.environ:
            print("msgf infer: error: --runtime onnx runs in one process; start it without torchrun",
                  file=sys.stderr)
            return 2
        return _run(args, _OneProcess(), None)
    import torch

    from msgf.train import distributed

    # Under torchrun each process takes its share of the batches and writes a part of --out,
    # which rank 0 merges; alone, a world of one process.
    world, device = distributed.init(args.device)
    threads = torch.get_num_threads()
    try:
        return _run(args, world, device)
    finally:
        torch.set_num_threads(threads)  # as it was, for a caller running the command in-process
        distributed.shutdown(world)


def _share_cpus(args) -> None:
    """Reading threads and the model's threads split the CPUs: on 2 CPUs, one thread decoding
    ahead and one running the model beat two model threads with no read-ahead by 1.65-1.67x
    (benchmarks/results/infer_scale.md), since small models gain little from a second thread."""
    runtime = getattr(args, "runtime", "torch")
    cpus = len(os.sched_getaffinity(0))
    if args.workers is None:
        args.workers = 1 if cpus <= 2 else 2
    if args.threads is None and "OMP_NUM_THREADS" not in os.environ:
        args.threads = max(1, cpus - args.workers)
    if args.threads is None and runtime == "onnx":  # onnxruntime ignores OMP_NUM_THREADS
        value = os.environ["OMP_NUM_THREADS"]
        args.threads = max(1, int(value)) if value.strip().isdigit() else None
    if args.threads is not None and runtime == "torch":
        import torch

        torch.set_num_threads(args.threads)


def _run(args, world, device) -> int:
    from msgf.infer.inputs import collect_inputs

    _share_cpus(args)

    def usage(message: str) -> int:
        if world.is_main:
            print(f"msgf infer: error: {message}", file=sys.stderr)
        return 2

    try:
        if args.runtime == "onnx":
            from msgf.deploy.predictor import OnnxPredictor

            predictor = OnnxPredictor(args.checkpoint, budget=args.budget, thresholds=args.thresholds,
                                      threads=args.threads)
        else:
            from msgf.infer import Predictor

            predictor = Predictor(args.checkpoint, budget=args.budget, thresholds=args.thresholds, device=device)
        inputs = collect_inputs(args.paths)
    except (ValueError, FileNotFoundError) as error:  # CheckpointError and ManifestError are ValueErrors
        return usage(str(error))
    if not inputs:
        return usage(f"no images found in {args.paths}")
    if args.resume and args.out is None:
        return usage("--resume needs --out (the lines to resume)")
    if world.distributed and args.out is None:
        return usage("under torchrun, --out is needed (each process writes a part of it)")
    if args.visualize is not None:
        args.visualize.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # This process's share: every world.size-th batch of the one-process grid, so that each
    # batch, and so each line, is exactly what one process computes.
    batches = [inputs[first:first + args.batch] for first in range(0, len(inputs), args.batch)]
    mine = batches[world.rank::world.size]
    part = args.out.with_name(f"{args.out.name}.part{world.rank}-of-{world.size}") if world.distributed else args.out
    if world.distributed and not args.resume:
        if world.is_main:  # parts of an earlier run (of any world size) must not be merged into this one
            for stale in _part_files(args.out):
                stale.unlink()
        _barrier(world)
    try:
        done = {}
        if args.resume:
            if world.distributed and world.is_main and args.out.exists():
                _kept_lines(args.out)  # rank 0 alone tidies the merged file, which the others then read
            _barrier(world)
            # the merged file, and under torchrun every part file, whatever world size wrote it
            for path in {args.out, part, *(_part_files(args.out) if world.distributed else [])}:
                if path.exists():
                    done.update(_kept_lines(path, tidy=path == part))
        out = open(part, "a" if done else "w") if part is not None else sys.stdout
    except (OSError, ValueError) as error:
        return usage(f"--out: {error}")
    if done and world.is_main:
        print(f"msgf infer: resuming: {len(done)} of {len(inputs)} inputs already in {args.out}", file=sys.stderr)
    tally = _Tally()
    tally.add_lines(done.values())
    try:
        failed = _infer(args, predictor, mine, len(inputs), out, done, tally, show_progress=world.is_main)
    finally:
        if out is not sys.stdout:
            out.close()
    if world.distributed:
        failed, tally = _merge(args.out, inputs, world, failed, args.resume)
    if world.is_main:
        tally.failed = failed
        with open(args.out, "a") if args.out is not None else contextlib.nullcontext(sys.stdout) as file:
            file.write(json.dumps({"summary": tally.summary(time.perf_counter() - start, len(inputs))}) + "\n")
            file.flush()
    return 1 if failed else 0


def _barrier(world) -> None:
    if not world.distributed:  # one process: nothing to wait for, and no torch to import (--runtime onnx)
        return
    from msgf.train import distributed

    distributed.barrier(world)


def _merge(out: Path, inputs, world, failed: list[str], resume: bool) -> tuple[list[str], "_Tally"]:
    """Rank 0 writes every process's lines (and, resuming, those kept in `out`) into `out` in input order,
    atomically, then removes the part files. Every process gets the failed files of all, in
    input order; rank 0 also the tally of the merged lines."""
    import torch.distributed as dist

    from msgf.atomic import atomic_write

    everyone = [None] * world.size
    dist.all_gather_object(everyone, failed)  # also a barrier: every part file is complete
    failed_anywhere = {path for part in everyone for path in part}
    if world.is_main:
        parts = _part_files(out)
        lines = {}
        for path in [out, *parts] if resume else parts:
            if path.exists():
                lines.update(_kept_lines(path, tidy=False))
        merged = [lines[item.path] for item in inputs if item.path in lines]
        with atomic_write(out, "w") as file:
            file.write("".join(merged))
        for path in parts:
            path.unlink(missing_ok=True)
    tally = _Tally()
    if world.is_main:
        tally.add_lines(merged)
    _barrier(world)
    return [item.path for item in inputs if item.path in failed_anywhere], tally


def _part_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{glob.escape(out.name)}.part*-of-*"))


def _kept_lines(path: Path, tidy: bool = True) -> dict[str, str]:
    """{input path: its line, with its newline} of a previous run's output. With `tidy`, the
    file is rewritten in place (atomically) without its summary and without a torn last line,
    so that new lines can be appended."""
    from msgf.atomic import atomic_write

    data = path.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]  # a line is whole once its newline is written
    kept = {}
    for number, raw in enumerate(whole.decode().splitlines(), start=1):
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number} is not a JSON line; is this msgf infer's output?") from None
        if "summary" in line:
            continue
        if not isinstance(line, dict) or "file" not in line:
            raise ValueError(f"{path}:{number} is not a line of msgf infer's output")
        kept[line["file"]] = raw + "\n"
    if tidy and (len(whole) != len(data) or len(kept) != whole.count(b"\n")):
        with atomic_write(path, "w") as file:
            file.write("".join(kept.values()))
    return kept


def _infer(args, predictor, batches, total: int, out, done: dict[str, str], tally: "_Tally",
           show_progress: bool) -> list[str]:
    """The lines of `batches` not in `done`, written to `out` a batch at a time and added to
    `tally`; the failed files."""
    from tqdm.auto import tqdm

    failed = []
    figures = _FigureNames(args.visualize)
    with tqdm(total=total, desc="infer", unit="img", disable=args.no_progress or not show_progress,
              file=sys.stderr) as bar:
        def fail(item, error) -> None:
            failed.append(item.path)
            bar.write(f"msgf infer: skipped {item.path}: {error}", file=sys.stderr)

        # A batch whose lines are all kept (--resume) is skipped; any other is computed whole,
        # so its lines are exactly those of a fresh run.
        todo = [item for batch in batches if not all(item.path in done for item in batch) for item in batch]
        bar.update(total - len(todo))
        lines = []
        stream = predictor.predict_stream_readers(todo, batch_size=args.batch, workers=args.workers)
        for count, (item, reader, result) in enumerate(stream, start=1):
            if isinstance(result, Exception):
                fail(item, result)
            elif item.path not in done:
                label = _label_index(item.label, predictor.class_names)
                line = {"file": item.path, **result.to_dict()}
                if item.label is not None:
                    line.update(label=item.label, correct=None if label is None else result.pred == label)
                lines.append(json.dumps(line) + "\n")
                tally.add_lines(lines[-1:])
                if args.visualize is not None:
                    from msgf.infer.visualize import save_figure

                    save_figure(figures.next(item.path), reader, result, predictor.class_names, label,
                                title=Path(item.path).name)
            if reader is not None:
                reader.close()
            if count % args.batch == 0 or count == len(todo):  # a batch's lines, written together
                out.write("".join(lines))
                out.flush()
                lines = []
            bar.update(1)
    return failed


def _label_index(label: str | None, class_names: list[str]) -> int | None:
    return class_names.index(label) if label is not None and label in class_names else None


class _Tally:
    def __init__(self):
        self.count, self.macs, self.labelled, self.correct = 0, 0, 0, 0
        self.failed: list[str] = []

    def add_lines(self, lines) -> None:
        """Lines of the output (JSON text)."""
        for raw in lines:
            line = json.loads(raw)
            self.count += 1
            self.macs += line["macs"]
            if line.get("correct") is not None:
                self.labelled += 1
                self.correct += int(line["correct"])

    def summary(self, seconds: float, total: int) -> dict:
        return {"images": self.count, "failed": len(self.failed), "failed_files": self.failed, "inputs": total,
                "seconds": round(seconds, 3), "images_per_second": self.count / seconds if seconds > 0 else None,
                "avg_macs": self.macs / self.count if self.count else None,
                "accuracy": self.correct / self.labelled if self.labelled else None}


class _FigureNames:
    """DIR/<stem>.png, with -2, -3, ... where inputs from different folders share a stem."""

    def __init__(self, directory: Path | None):
        self.directory, self.used = directory, set()

    def next(self, path: str) -> Path:
        stem, k = Path(path).stem, 1
        name = f"{stem}.png"
        while name in self.used:
            k += 1
            name = f"{stem}-{k}.png"
        self.used.add(name)
        return self.directory / name

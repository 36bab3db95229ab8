"""Static baselines: a classifier on whole scenes at one input size, and `ensure_static`, which
trains (or reuses) a plan's baseline of either kind.

kind "pooled" (msgf.reproduce.pooled): MS-GFNet's stage-0 f_L with a pooled per-location head.

kind "scratch", below: what a user would pick instead of a glance-and-focus model: the torchvision classifier of the
same name (fresh weights; nothing is downloaded) on the whole scene resized (antialiased,
normalised inside msgf.ops.glance) to H x W. Trained on the GFNet runs' training split with
SGD + Nesterov + cosine and the learning rate, momentum and weight decay of the config's
stage 0 (the stage that trains a backbone from scratch); the epoch with the best validation
accuracy is kept and scored on the test split. MACs per image are counted with
FlopCounterMode (FLOPs / 2), the resize not included, as for the GFNet (design.md 4).

Each baseline lives in WORKDIR/static-HxW/: state.pt after every epoch (resumable),
model.pt (the best weights) and done.json (its results) once finished.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from msgf.atomic import atomic_save
from msgf.reproduce.plan import StaticRun
from msgf.reproduce.runs import read_done, write_done


def build(backbone: str, num_classes: int, bn_momentum: float | None = None) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(backbone, weights=None, num_classes=num_classes)
    if bn_momentum is not None:  # as the GFNet runs set it (design.md 7: MobileNet-V3's 0.01 lags)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model


def normalisation() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The GFNet's default mean/std (a GFConfig's), so both see identically scaled pixels."""
    from msgf.models.config import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


def inputs(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, C) scenes -> normalised float (N, C, h, w), as the GFNet's glance is made."""
    from msgf import ops

    mean, std = normalisation()
    return ops.glance(images, tuple(size), mean=mean, std=std)


def count_macs(model: nn.Module, size: tuple[int, int], method: str = "forward") -> int:
    """Multiply-adds of one normalised image at `size` (H, W) through `model.<method>`:
    FlopCounterMode's FLOPs / 2, on a meta copy."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        getattr(meta, method)(torch.zeros((1, 3, *size), device="meta"))
    return int(counter.get_total_flops()) // 2


@torch.no_grad()
def correct(model: nn.Module, dataset, size: tuple[int, int], batch_size: int) -> torch.Tensor:
    """(N,) bool: which scenes of `dataset` the model classifies right."""
    from msgf.train.data import collate

    model.eval()
    rows = [torch.zeros(0, dtype=torch.bool)]
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        rows.append(model(inputs(batch["images"], size)).argmax(1) == batch["labels"])
    return torch.cat(rows)


def accuracy(model: nn.Module, dataset, size: tuple[int, int], batch_size: int) -> float:
    right = correct(model, dataset, size, batch_size)
    return int(right.sum()) / max(len(right), 1)


# Activations kept for the backward pass grow with the input: a batch of 32 full 960x1280
# scenes would hold ~14 GB (measured: ~4.4 GB peak for 8). Larger batches are split into
# chunks of at most this many pixels whose gradients add up to the batch's (the loss is
# weighted by chunk size); BatchNorm then normalises over each chunk instead of the batch.
MAX_CHUNK_PIXELS = 8 * 960 * 1280


def chunk_size(batch_size: int, size: tuple[int, int]) -> int:
    return max(1, min(batch_size, MAX_CHUNK_PIXELS // (size[0] * size[1])))


def _step(model, optimizer, images, labels, size) -> float:
    """One SGD step on the batch (accumulated over chunks where it is large); its mean loss."""
    optimizer.zero_grad(set_to_none=True)
    step, total = chunk_size(len(labels), size), 0.0
    for start in range(0, len(labels), step):
        chunk = slice(start, start + step)
        loss = F.cross_entropy(model(inputs(images[chunk], size)), labels[chunk]) * (len(labels[chunk]) / len(labels))
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    return total


class Scratch(nn.Module):
    """uint8 (N, H, W, C) scenes -> class scores: a "scratch" baseline's network on `inputs`."""

    def __init__(self, net: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.net, self.size = net, tuple(size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(inputs(images, self.size))


def load(results: dict, workdir: Path, backbone: str, num_classes: int) -> nn.Module:
    """The finished baseline of `results` (ensure_static's) as a module on uint8 scenes."""
    path, size = Path(workdir) / results["name"], tuple(results["size"])
    if results.get("kind", "scratch") == "pooled":
        from msgf.reproduce import pooled

        return pooled.load(path, workdir, size)
    net = build(backbone, num_classes)
    net.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return Scratch(net, size).eval()


def test_scores(results: dict, workdir: Path, backbone: str, num_classes: int, splits, batch_size: int) -> np.ndarray:
    """Which test scenes the finished baseline of `results` classifies right, as 0/1 scores for
    the paired claims; a pooled baseline reads the test maps it cached while training. Its mean
    must be the test accuracy recorded then, or the workdir holds another model."""
    model = load(results, workdir, backbone, num_classes)
    if results.get("kind", "scratch") == "pooled":
        from msgf.reproduce import pooled

        right = pooled.map_correct(model, *pooled.saved_maps(Path(workdir) / results["name"] / "maps" / "test"))
    else:
        right = correct(model, splits.evaluation("test"), tuple(results["size"]), batch_size)
    scores = right.numpy().astype(np.float64)
    if abs(scores.mean() - results["test_accuracy"]) > 0.5 / len(scores):  # another count of right scenes
        raise ValueError(f"workdir: {results['name']} scores {scores.mean():.4f} on test now, but recorded "
                         f"{results['test_accuracy']:.4f} when it was trained; delete it to train it again")
    return scores


def ensure_static(run: StaticRun, config, splits, workdir: Path, *, progress: bool = True, log=print) -> dict:
    """Train the static baseline `run` (or reuse it) on `splits` (msgf.train.data.Splits of
    `config.data`); its results: sizes, MACs, best epoch, validation and test accuracy."""
    if run.epochs < 1:
        raise ValueError(f"epochs: static baseline {run.name} needs at least one epoch, got {run.epochs}")
    if run.kind == "pooled":
        from msgf.reproduce.pooled import ensure_pooled

        return ensure_pooled(run, config, splits, workdir, progress=progress, log=log)
    return _ensure_scratch(run, config, splits, workdir, progress=progress, log=log)


def _ensure_scratch(run: StaticRun, config, splits, workdir: Path, *, progress: bool, log) -> dict:
    out = Path(workdir) / run.name
    s0, data = config.stage0, config.data
    recipe = {"backbone": config.backbone, "size": list(run.size), "epochs": run.epochs, "seed": config.seed,
              "lr": s0.lr, "momentum": s0.momentum, "weight_decay": s0.weight_decay,
              "batch_size": data.batch_size, "bn_momentum": config.bn_momentum,
              "data": json.loads(json.dumps(config.to_dict()["data"]))}
    done = read_done(out, recipe)
    if done is not None:
        log(f"{run.name}: finished earlier ({done['seconds'] / 60:.1f} min), reused")
        return {**done["results"], "seconds": done["seconds"], "reused": True}
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set = splits.train(0, 0), splits.evaluation("val")
    classes = splits.classes()
    torch.manual_seed(config.seed)
    model = build(config.backbone, len(classes), config.bn_momentum)
    optimizer = torch.optim.SGD(model.parameters(), lr=s0.lr, momentum=s0.momentum, nesterov=True,
                                weight_decay=s0.weight_decay)
    steps_per_epoch = -(-len(train_set) // data.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(run.epochs * steps_per_epoch, 1))
    state = {"epoch": 0, "best": None, "best_val": -1.0, "best_epoch": None, "history": [], "seconds": 0.0}
    state_path = out / "state.pt"
    if state_path.exists():
        saved = torch.load(state_path, weights_only=True)
        if saved["recipe"] != recipe:
            raise ValueError(f"workdir: {state_path} belongs to another static recipe; use another --workdir")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log(f"{run.name}: resuming at epoch {state['epoch'] + 1}/{run.epochs}")
    else:
        log(f"{run.name}: training {run.epochs} epochs on {len(train_set)} scenes at {run.size[0]}x{run.size[1]}")
    from msgf.train.data import collate

    while state["epoch"] < run.epochs:
        epoch, started = state["epoch"], time.time()
        model.train()
        # the epoch's shuffle and dropout depend on (seed, epoch) only: a resumed run repeats
        # exactly what an uninterrupted one does
        torch.manual_seed(config.seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        batches = torch.utils.data.DataLoader(train_set, batch_size=data.batch_size, shuffle=True, generator=gen,
                                              collate_fn=collate)
        total_loss = 0.0
        for batch in tqdm(batches, desc=f"{run.name} epoch {epoch + 1}", unit="batch", leave=False,
                          disable=not progress):
            loss = _step(model, optimizer, batch["images"], batch["labels"], run.size)
            scheduler.step()
            total_loss += loss
        val = accuracy(model, val_set, run.size, data.eval_batch_size)
        if val > state["best_val"]:
            state.update(best_val=val, best_epoch=epoch,
                         best={k: v.detach().clone() for k, v in model.state_dict().items()})
        seconds = time.time() - started
        state["history"].append({"epoch": epoch, "loss": total_loss / len(batches), "val_accuracy": val,
                                 "seconds": round(seconds, 1)})
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        atomic_save({"recipe": recipe, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "state": state}, state_path)
        log(f"{run.name} epoch {epoch + 1}/{run.epochs} ({seconds:.0f}s) | loss {total_loss / len(batches):.4f} "
            f"| val accuracy {val:.4f}")
    model.load_state_dict(state["best"])
    test = accuracy(model, splits.evaluation("test"), run.size, data.eval_batch_size)
    atomic_save(model.state_dict(), out / "model.pt")
    results = {"name": run.name, "kind": run.kind, "size": list(run.size), "epochs": run.epochs, "macs": count_macs(model, run.size),
               "best_epoch": state["best_epoch"], "val_accuracy": state["best_val"], "test_accuracy": test,
               "history": state["history"]}
    write_done(out, recipe, state["seconds"], results=results)
    log(f"{run.name}: test accuracy {test:.4f} at {results['macs'] / 1e6:.1f}M MACs per image "
        f"(best epoch {state['best_epoch'] + 1})")
    return {**results, "seconds": state["seconds"], "reused": False}

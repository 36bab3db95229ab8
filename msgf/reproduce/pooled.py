"""The "pooled" static baseline: MS-GFNet's stage-0 f_L reading the whole scene in one pass.

Why this design (issue 15): with four scene-level labels, a 10-29 px sign among decoys in a
960x1280 scene is a weakly supervised problem. Plain fine-tuning of an ImageNet Lite0 on whole
scenes stayed at the majority class on 2 cores (measured at 480x640: 48.7% and 47.3% after 2
epochs, where the majority class scores 48.7%), so such a baseline would make any saving look
large for no reason. The static reference instead starts where the GFNets start, from
MS-GFNet's stage-0 weights: its f_L has learnt to read the signs on crops, and its FC_2 head
maps an f_L feature to the classes. Here f_L sees the whole scene resized to H x W, FC_2 scores
every cell of its last feature map (a 1x1 convolution with FC_2's weights), and the class
scores are pooled over the cells by log-sum-exp with a learnt sharpness r:

    score_k = (logsumexp_cells(r * z_k) - log(cells)) / r    (the mean at r -> 0, the max at r -> inf)

so one sign anywhere can decide the scene, where a global mean would drown it. Only the head
and r are fine-tuned, on f_L's frozen maps of the training scenes (computed once and cached):
backpropagating through f_L at 960x1280 costs more than 2 cores give. The model sees the whole
scene at its input size in one pass, and its MACs are counted as they run (f_L at H x W plus
the head at every cell).

Each baseline lives in WORKDIR/static-HxW/: maps/ (the cached maps, in chunks, resumable),
state.pt after every epoch, model.pt (the head and r) and done.json once finished.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from msgf.atomic import atomic_save
from msgf.reproduce.runs import read_done, write_done

SOURCE = ("ms", "stage0.ckpt")  # the MS-GFNet run and checkpoint whose f_L and FC_2 are used
HEAD_STEP = 2  # FC_2: the auxiliary head of the first focus step, the one stage 0 trains on f_L
INITIAL_SHARPNESS = 4.0
MAP_CHUNK = 50  # scenes per cached map file


class PooledStatic(nn.Module):
    """uint8 (N, H, W, C) scenes -> class scores (N, K): f_L on the scene resized to `size`,
    the head at every cell of its last map, log-sum-exp pooled."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, size: tuple[int, int]):
        super().__init__()
        self.encoder, self.head, self.size = encoder, head, tuple(size)
        self.mean, self.std = encoder.mean, encoder.std
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(INITIAL_SHARPNESS)))

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        from msgf import ops

        return ops.glance(images, self.size, mean=self.mean, std=self.std)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.last_map(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) feature maps -> (N, K) pooled class scores."""
        cells = self.head(fmap.flatten(2).transpose(1, 2).to(self.head.weight.dtype))  # (N, h*w, K)
        r = self.log_sharpness.exp()
        return (torch.logsumexp(r * cells, dim=1) - math.log(cells.shape[1])) / r

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_normalised(self.inputs(images))


def build(workdir: Path, size: tuple[int, int]) -> PooledStatic:
    """The untrained baseline: f_L and FC_2 of WORKDIR/ms/stage0.ckpt, f_L frozen."""
    from msgf.checkpoint import load_checkpoint

    path = Path(workdir).joinpath(*SOURCE)
    if not path.exists():
        raise ValueError(f"the pooled static baseline starts from {path}, which does not exist yet "
                         f"(train the {SOURCE[0]!r} run first)")
    gfnet = load_checkpoint(path)
    model = PooledStatic(gfnet.local_encoder, gfnet.aux_heads[HEAD_STEP - 1], size)
    model.encoder.requires_grad_(False)
    return model.eval()


def trainable(model: PooledStatic) -> list[nn.Parameter]:
    return [*model.head.parameters(), model.log_sharpness]


def head_state(model: PooledStatic) -> dict:
    """A copy of what fine-tuning changes (the head and r), without the frozen encoder."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


def chunk_scenes(size: tuple[int, int]) -> int:
    """Scenes per f_L pass: about 8 at 960x1280 (a few GB of activations), more when smaller."""
    return max(1, min(64, 8 * 960 * 1280 // (size[0] * size[1])))


@torch.no_grad()
def cached_maps(model: PooledStatic, dataset, count: int, folder: Path, recipe: dict, *, progress: bool,
                desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """f_L's last maps (float16) and labels of the first `count` items of `dataset`, computed
    once in chunks of MAP_CHUNK scenes under `folder` (an interrupted pass keeps its chunks)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "recipe.json"
    if marker.exists() and json.loads(marker.read_text()) != recipe:
        raise ValueError(f"workdir: {folder} holds maps of another recipe; use another --workdir")
    marker.write_text(json.dumps(recipe, indent=2) + "\n")
    maps, labels = [], []
    model.eval()
    for start in tqdm(range(0, count, MAP_CHUNK), desc=desc, unit="chunk", leave=False, disable=not progress):
        path = folder / f"{start:06d}.pt"
        if not path.exists():
            items = [dataset[i] for i in range(start, min(start + MAP_CHUNK, count))]
            images = torch.stack([torch.as_tensor(item["image"]) for item in items])
            step = chunk_scenes(model.size)
            part = torch.cat([model.feature_map(model.inputs(images[i:i + step])).half()
                              for i in range(0, len(images), step)])
            atomic_save({"maps": part, "labels": torch.tensor([int(item["label"]) for item in items])}, path)
        saved = torch.load(path, weights_only=True)
        maps.append(saved["maps"])
        labels.append(saved["labels"])
    return torch.cat(maps), torch.cat(labels)


def saved_maps(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps and labels `cached_maps` wrote under `folder`, in scene order."""
    chunks = sorted(Path(folder).glob("[0-9]*.pt"))
    if not chunks:
        raise ValueError(f"workdir: no cached maps in {folder}")
    saved = [torch.load(path, weights_only=True) for path in chunks]
    return torch.cat([s["maps"] for s in saved]), torch.cat([s["labels"] for s in saved])


@torch.no_grad()
def map_correct(model: PooledStatic, maps: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N,) bool: which scenes the pooled head classifies right from their cached maps."""
    return torch.cat([torch.zeros(0, dtype=torch.bool)] +
                     [model.pool(maps[i:i + batch].float()).argmax(1) == labels[i:i + batch]
                      for i in range(0, len(maps), batch)])


def map_accuracy(model: PooledStatic, maps: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> float:
    return int(map_correct(model, maps, labels, batch).sum()) / max(len(labels), 1)


def ensure_pooled(run, config, splits, workdir: Path, *, progress: bool = True, log=print) -> dict:
    """Fine-tune (or reuse) the pooled static baseline `run` (a StaticRun of kind "pooled")."""
    from msgf.reproduce.static import count_macs

    out = Path(workdir) / run.name
    s1, data = config.stage1, config.data
    recipe = {"kind": run.kind, "source": "/".join(SOURCE), "head_step": HEAD_STEP, "size": list(run.size),
              "epochs": run.epochs, "train_samples": run.train_samples, "seed": config.seed,
              "lr": s1.lr_classifier, "momentum": s1.momentum, "weight_decay": s1.weight_decay,
              "batch_size": data.batch_size, "data": json.loads(json.dumps(config.to_dict()["data"]))}
    done = read_done(out, recipe)
    if done is not None:
        log(f"{run.name}: finished earlier ({done['seconds'] / 60:.1f} min), reused")
        return {**done["results"], "seconds": done["seconds"], "reused": True}
    started = time.time()
    model = build(workdir, run.size)
    train_set = splits.train(0, 0)
    count = len(train_set) if run.train_samples is None else min(run.train_samples, len(train_set))
    sets = {"train": (train_set, count)}
    sets.update({which: (splits.evaluation(which), len(splits.evaluation(which))) for which in ("val", "test")})
    cache = {}
    for which, (dataset, n) in sets.items():
        log(f"{run.name}: f_L maps of {n} {which} scenes at {run.size[0]}x{run.size[1]}")
        cache[which] = cached_maps(model, dataset, n, out / "maps" / which, recipe, progress=progress,
                                   desc=f"{run.name} {which} maps")
    mapping_seconds = time.time() - started

    params = trainable(model)
    # stage I's classifier settings: the head is one of the classifier heads stage I trains
    optimizer = torch.optim.SGD(params, lr=s1.lr_classifier, momentum=s1.momentum, nesterov=True,
                                weight_decay=s1.weight_decay)
    maps, labels = cache["train"]
    steps_per_epoch = -(-len(labels) // data.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(run.epochs * steps_per_epoch, 1))
    zero_shot = map_accuracy(model, *cache["val"])
    state = {"epoch": 0, "best": head_state(model), "best_val": zero_shot, "best_epoch": -1,
             "history": [{"epoch": -1, "loss": None, "val_accuracy": zero_shot, "seconds": 0.0}],
             "seconds": mapping_seconds}
    state_path = out / "state.pt"
    if state_path.exists():
        saved = torch.load(state_path, weights_only=True)
        if saved["recipe"] != recipe:
            raise ValueError(f"workdir: {state_path} belongs to another static recipe; use another --workdir")
        model.load_state_dict(saved["head"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log(f"{run.name}: resuming at epoch {state['epoch'] + 1}/{run.epochs}")
    else:
        log(f"{run.name}: zero-shot validation accuracy {zero_shot:.4f}; fine-tuning the head {run.epochs} epochs "
            f"on {len(labels)} scenes' maps")
    while state["epoch"] < run.epochs:
        epoch, epoch_started = state["epoch"], time.time()
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=gen)
        total = 0.0
        for start in range(0, len(order), data.batch_size):
            rows = order[start:start + data.batch_size]
            loss = F.cross_entropy(model.pool(maps[rows].float()), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        val = map_accuracy(model, *cache["val"])
        if val > state["best_val"]:
            state.update(best_val=val, best_epoch=epoch, best=head_state(model))
        seconds = time.time() - epoch_started
        state["history"].append({"epoch": epoch, "loss": total / steps_per_epoch, "val_accuracy": val,
                                 "seconds": round(seconds, 2)})
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        atomic_save({"recipe": recipe, "head": head_state(model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "state": state}, state_path)
        log(f"{run.name} epoch {epoch + 1}/{run.epochs} | loss {total / steps_per_epoch:.4f} | val accuracy {val:.4f}")
    model.load_state_dict(state["best"], strict=False)
    test = map_accuracy(model, *cache["test"])
    atomic_save(state["best"], out / "model.pt")
    results = {"name": run.name, "kind": run.kind, "size": list(run.size), "epochs": run.epochs,
               "train_samples": len(labels), "macs": count_macs(model, run.size, method="forward_normalised"),
               "best_epoch": state["best_epoch"], "zero_shot_val_accuracy": zero_shot,
               "sharpness": float(state["best"]["log_sharpness"].exp()),
               "val_accuracy": state["best_val"], "test_accuracy": test, "history": state["history"]}
    write_done(out, recipe, state["seconds"], results=results)
    log(f"{run.name}: test accuracy {test:.4f} at {results['macs'] / 1e6:.1f}M MACs per image "
        f"(best epoch {state['best_epoch'] + 1}; 0 = FC_2 as stage 0 left it)")
    return {**results, "seconds": state["seconds"], "reused": False}


def load(path: Path, workdir: Path, size: tuple[int, int]) -> PooledStatic:
    model = build(workdir, size)
    model.load_state_dict(torch.load(Path(path) / "model.pt", weights_only=True), strict=False)
    return model.eval()

"""Datasets and loaders for training: splits from `msgf.data`, optional in-memory caching,
fresh procedural scenes per epoch, and the per-(stage, epoch, rank) random streams.

Every random choice of training (data order, random locations and sizes, PPO sampling) draws
from a generator seeded by `stream(seed, stage, epoch, rank, purpose)`, never from global
state. So a run resumed at an epoch boundary replays exactly what an uninterrupted run does.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from msgf.data.augment import flip_boxes
from msgf.memory import release_memory
from msgf.train.presets import DataConfig

_PURPOSES = {"shuffle": 0, "locations": 1, "ppo": 2, "crops": 3, "data": 4, "glances": 5, "regions": 6, "locator": 7,
             "glance tuning": 8}


def stream_seed(seed: int, stage: int, epoch: int, rank: int = 0, purpose: str = "locations") -> int:
    """A 63-bit seed for one random stream of one epoch of one stage on one process."""
    entropy = [int(seed), int(stage), int(epoch), int(rank), _PURPOSES[purpose]]
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1, 1 << 32], dtype=np.uint64)) & np.uint64((1 << 63) - 1))


def generator(seed: int, stage: int, epoch: int, rank: int = 0, purpose: str = "locations") -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(stream_seed(seed, stage, epoch, rank, purpose))
    return gen


def generator_seed(seed: int, stage: int) -> int:
    """The seed of a stage's training shuffle (the sampler adds the epoch)."""
    return stream_seed(seed, stage, 0, 0, "shuffle") % (1 << 31)


def open_split(cfg: DataConfig, split: str, *, seed: int, num_samples: int | None, augment: bool) -> Dataset:
    from msgf import data

    return data.open_dataset(cfg.source, split, seed=seed, augment=augment, num_samples=num_samples,
                             image_size=cfg.image_size)


class InMemory(Dataset):
    """A dataset read once: images in one uint8 (N, H, W, C) tensor, labels, boxes per sample."""

    def __init__(self, dataset: Dataset, *, workers: int = 0, desc: str = "cache", progress: bool = False):
        from tqdm.auto import tqdm

        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers)
        images, self.labels, self.boxes, self.paths, self.distractors = None, [], [], [], []
        for i, item in enumerate(tqdm(loader, total=len(dataset), desc=desc, unit="img", disable=not progress,
                                      leave=False)):
            image = torch.as_tensor(item["image"])
            if images is None:
                images = torch.empty((len(dataset), *image.shape), dtype=torch.uint8)
            if image.shape != images.shape[1:]:
                raise ValueError(f"image {i} has shape {tuple(image.shape)}, the first {tuple(images.shape[1:])}; "
                                 f"set an image size so that a batch can be stacked")
            images[i] = image
            self.labels.append(int(item["label"]))
            self.boxes.append(_boxes(item, "boxes"))
            self.paths.append(item.get("path"))
            if "distractors" in item:
                self.distractors.append(_boxes(item, "distractors"))
        self.images = images
        self.classes = list(getattr(dataset, "classes", []))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.images[index], "label": self.labels[index], "boxes": self.boxes[index],
                "path": self.paths[index]}
        if self.distractors:
            item["distractors"] = self.distractors[index]
        return item


class _AsGlance(Dataset):
    """Items of `dataset` as (glance (3, G, G) float16, label, objects (K, 4), image (H, W), region, region box):
    resized (and cut) in the loader's workers, so only small tensors cross process boundaries."""

    def __init__(self, dataset: Dataset, size: int, mean, std, region: int):
        self.dataset, self.size, self.mean, self.std, self.region = dataset, size, mean, std, region

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        from msgf import ops

        item = self.dataset[index]
        image = torch.as_tensor(item["image"])
        objects = torch.cat([_boxes(item, "boxes"), _boxes(item, "distractors")])
        glance = ops.glance(image[None], self.size, mean=self.mean, std=self.std)[0].half()
        region, region_box = object_region(image, item, self.region) if self.region else \
            (torch.zeros((0, 0, 3), dtype=torch.uint8), torch.zeros((0, 4)))
        return glance, int(item["label"]), objects, torch.tensor(image.shape[:2]), region, region_box


def object_region(image: Tensor, item: dict, side: int) -> tuple[Tensor, Tensor]:
    """A full-resolution (side x side) window of `image` (H, W, C) centred on the item's object
    box, or on its first distractor where it has none (an EMPTY scene's hard negative), or on
    the image centre where it has neither; with that box in window coordinates ((1, 4) or (0, 4)).

    Every crop of side <= side/2 that contains the box lies inside the window, so f_L's
    stage-0 crops can be cut from windows as they would be from the whole image.
    """
    height, width = image.shape[:2]
    side = min(side, height, width)
    candidates = [b for b in (_boxes(item, "boxes"), _boxes(item, "distractors")) if len(b)]
    box = candidates[0][:1] if candidates else torch.zeros((0, 4))
    cx, cy = (float(box[0, 0] + box[0, 2]) / 2, float(box[0, 1] + box[0, 3]) / 2) if len(box) else (width / 2,
                                                                                                      height / 2)
    left = int(min(max(round(cx - side / 2), 0), width - side))
    top = int(min(max(round(cy - side / 2), 0), height - side))
    shift = torch.tensor([left, top, left, top], dtype=torch.float32)
    return image[top:top + side, left:left + side].clone(), box - shift


def _boxes(item: dict, key: str) -> Tensor:
    """item[key] as float32 (K, 4) boxes; none when the item has no such key."""
    return torch.as_tensor(item.get(key, torch.zeros((0, 4))), dtype=torch.float32).reshape(-1, 4)


class GlanceSet:
    """Glances of many training images with their object boxes (annotated plus distractors),
    kept at glance resolution: what stage 0's locator trains f_G on (msgf.train.locate). With
    `encode` (a frozen f_G's `feature_map`) it keeps that map of each glance instead, which is
    all a locator on a frozen f_G reads, computed once. With `region` > 0 it also keeps a
    full-resolution window around one object of each image (`object_region`), which stage 0
    trains f_L on (`Stage0Config.local_samples`).

    A 192 px glance takes 1/30 of a 960x1280 scene's memory, Lite0's stride-16 map of a 256 px
    glance 1/65 and a 256 px window 1/19, so this holds several times more images than the
    full-resolution cache, which both encoders need: f_G memorised 1500 scenes' sign positions
    without learning to find signs, and learnt it from 8000 (measured); f_L read 60/49/41% of
    the signs on sign-centred 64/96/128 px test crops after 30 epochs over 1500 scenes' 750
    signs, and 88% at every size from 8000 windows.
    """

    def __init__(self, dataset: Dataset, size: int, mean, std, *, region: int = 0, encode=None,
                 workers: int = 0, progress: bool = False, encode_batch: int = 8):
        from tqdm.auto import tqdm

        loader = DataLoader(_AsGlance(dataset, size, mean, std, region), batch_size=None, shuffle=False,
                            num_workers=workers)
        # every item is copied out of the worker's shared memory at once: holding thousands of
        # received tensors keeps as many file descriptors open ("Too many open files")
        glances = regions = None
        labels, self.objects, self.region_boxes, shapes = [], [], [], set()
        pending: list[Tensor] = []  # glances waiting for `encode`, a batch at a time
        self.maps: Tensor | None = None

        # A few glances at a time, the freed activations given back after each: the memory an
        # encoder's activations take grows with the batch, and glibc keeps what was freed between
        # the items arriving (1000 cpu-demo scenes, Lite0 at 256 px: the process peaked 1113 MB
        # above the loaded model at 32 glances a batch, 381 MB at 8 and trimmed; 170 MB are kept)
        def encode_pending(end: int) -> None:
            maps = encode(torch.stack(pending).float()).half()
            if self.maps is None:
                self.maps = torch.empty((len(dataset), *maps.shape[1:]), dtype=maps.dtype)
            self.maps[end - len(pending):end] = maps
            pending.clear()
            release_memory()

        for i, (glance, label, objects, shape, window, window_box) in enumerate(tqdm(
                loader, total=len(dataset), desc="cache glances", unit="img", disable=not progress, leave=False)):
            if encode is not None:
                pending.append(glance.clone())
                if len(pending) == encode_batch:
                    encode_pending(i + 1)
            else:
                if glances is None:
                    glances = torch.empty((len(dataset), *glance.shape), dtype=glance.dtype)
                glances[i] = glance
            if region and regions is None:
                regions = torch.empty((len(dataset), *window.shape), dtype=torch.uint8)
            labels.append(int(label))
            self.objects.append(objects.clone())
            shapes.add(tuple(int(v) for v in shape))
            if region:
                if window.shape != regions.shape[1:]:
                    raise ValueError(f"image {i}'s object window is {tuple(window.shape)}, the first's "
                                     f"{tuple(regions.shape[1:])}: stage0.local_samples needs images of one size")
                regions[i] = window
                self.region_boxes.append(window_box.clone())
        if pending:
            encode_pending(len(labels))
        if len(shapes) != 1:
            raise ValueError(f"stage0.glance_samples needs images of one size, got {sorted(shapes)}")
        self.glances, self.labels = glances, torch.tensor(labels)
        self.image_hw = shapes.pop()
        self.regions = regions  # uint8 (N, side, side, C), or None

    def __len__(self) -> int:
        return len(self.objects)

    def batch(self, indices: Tensor, flips: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Glances (float32), labels and object boxes of `indices`, mirrored left-right where `flips`."""
        glances = self.glances[indices].float()
        glances[flips] = glances[flips].flip(-1)
        objects = [flip_boxes(self.objects[index], self.image_hw[1]) if flip else self.objects[index]
                   for index, flip in zip(indices.tolist(), flips.tolist())]
        return glances, self.labels[indices], objects

    def region_batch(self, indices: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Windows (uint8 (B, side, side, C)), labels and the windows' object boxes of `indices`.
        Never mirrored: a mirrored "50" is not a 50."""
        if self.regions is None:
            raise ValueError("this GlanceSet keeps no regions (built with region=0)")
        return self.regions[indices], self.labels[indices], [self.region_boxes[i] for i in indices.tolist()]


def collate(items: list[dict]) -> dict:
    """msgf.data.collate_batch: images uint8 (N, H, W, C), labels (N,), boxes list of (K_i, 4)."""
    from msgf.data import collate_batch

    batch = collate_batch(items)
    if all("distractors" in it for it in items):
        batch["distractors"] = [it["distractors"] for it in items]
    return batch


class SynthSignsWithDistractors(Dataset):
    """Built-in scenes whose items also carry "distractors": the boxes of the red-ringed decoys.

    Training uses them as hard negatives: an EMPTY scene's crops (stage 0) and a share of its
    stage-I patches land on a decoy, so the encoders learn to read digits rather than to
    detect "a red ring" (which the glance already sees). No augmentation: decoy boxes would
    not follow a pan.
    """

    def __init__(self, split: str, *, seed: int, num_samples: int | None, image_size):
        from msgf.data.synthsigns import CLASSES, DEFAULT_NUM_SAMPLES, DEFAULT_SIZE

        self.split, self.seed = split, seed
        self.image_size = tuple(image_size) if image_size is not None else DEFAULT_SIZE
        self.num_samples = int(num_samples if num_samples is not None else DEFAULT_NUM_SAMPLES[split])
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        from msgf.data.synthsigns import render_scene

        scene = render_scene(index, self.split, self.seed, self.image_size)
        boxes = torch.zeros((0, 4)) if scene.box is None else torch.from_numpy(scene.box[None].copy())
        return {"image": torch.from_numpy(scene.image.copy()), "label": scene.label, "boxes": boxes, "path": None,
                "distractors": torch.from_numpy(scene.decoy_boxes.copy()).reshape(-1, 4)}


def loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int, world: int,
           workers: int, drop_last: bool) -> DataLoader:
    """A loader over this process's shard; the shuffle depends on (seed, epoch) only."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=drop_last, persistent_workers=False)


# how a run's data inputs are named in messages: the DataConfig field and its msgf train flag
ARGUMENTS = {"train": "data.source (--data)", "val": "data.val_source (--val-data)",
             "test": "data.test_source (--test-data)"}


def data_roles(cfg: DataConfig, seed: int):
    """Which data serves train, val and test (msgf.data.roles.DataRoles); ValueError naming the
    inputs where two roles would share a file or images."""
    from msgf.data.roles import DataRoles

    return DataRoles.resolve(cfg.source, cfg.val_source, cfg.test_source, layout=cfg.layout,
                             val_fraction=cfg.val_fraction, val_limit=cfg.val_samples, seed=seed,
                             synthsigns_splits=(cfg.val_split, cfg.test_split), arguments=ARGUMENTS)


class Splits:
    """The training split (cached, fixed, or fresh every epoch) and the evaluation splits, each
    read from the data of its role (`roles`) and from nothing else."""

    def __init__(self, cfg: DataConfig, seed: int, *, progress: bool = False):
        self.cfg, self.seed, self.progress = cfg, seed, progress
        self.roles = data_roles(cfg, seed)
        self._record: dict | None = None
        self._train = None
        self._glances: GlanceSet | None = None
        self._eval: dict[str, Dataset] = {}

    def train(self, stage: int, epoch: int) -> Dataset:
        cfg = self.cfg
        if cfg.fresh_scenes:
            # a new dataset seed per (stage, epoch): new scenes (only meaningful for synthsigns)
            return self._open_train(stream_seed(self.seed, stage, epoch, 0, "data") % (1 << 31), cfg.train_samples)
        if self._train is None:
            dataset = self._open_train(self.seed, cfg.train_samples)
            self._train = InMemory(dataset, workers=cfg.cache_workers, desc="cache train", progress=self.progress) \
                if cfg.cache else dataset
        return self._train

    def glances(self, size: int, count: int, mean, std, region: int = 0, encode=None) -> GlanceSet:
        """The first `count` training images (a superset of the training split when count is
        larger) as a GlanceSet (with object windows of side `region` if > 0, and maps instead
        of glances with `encode`), built once."""
        if self._glances is None:
            self._glances = GlanceSet(self._open_train(self.seed, count), size, mean, std, region=region,
                                      encode=encode, workers=self.cfg.cache_workers, progress=self.progress)
        return self._glances

    def release_glances(self) -> None:
        """Let the GlanceSet go (stage 0 is its only reader): its maps and windows take about
        0.7 GB at cpu-demo's 4000 scenes."""
        self._glances = None

    def _open_train(self, seed: int, num_samples: int | None) -> Dataset:
        cfg = self.cfg
        if cfg.distractors and cfg.source == "synthsigns":
            return SynthSignsWithDistractors("train", seed=seed, num_samples=num_samples, image_size=cfg.image_size)
        return self.roles.open("train", seed=seed, num_samples=num_samples, augment=cfg.augment,
                               image_size=cfg.image_size)

    @property
    def has_test(self) -> bool:
        return self.roles.has("test")

    def evaluation(self, which: str) -> Dataset:
        """The validation or test set ("val", "test"); ValueError for a test set the run lacks."""
        if which not in ("val", "test"):
            raise ValueError(f"which: expected 'val' or 'test', got {which!r}")
        if which not in self._eval:
            dataset = self.roles.open(which, seed=self.seed, num_samples=self._samples(which), augment=False,
                                      image_size=self.cfg.image_size)
            self._eval[which] = InMemory(dataset, workers=self.cfg.cache_workers, desc=f"cache {which}",
                                         progress=self.progress) if self.cfg.cache else dataset
        return self._eval[which]

    def _samples(self, role: str) -> int | None:
        return {"train": self.cfg.train_samples, "val": self.cfg.val_samples, "test": self.cfg.test_samples}[role]

    def counts(self) -> dict[str, int]:
        """The images each role uses, counted without reading any."""
        return {role: self.roles.count(role, self._samples(role)) for role in ("train", "val", "test")
                if self.roles.has(role)}

    def record(self) -> dict:
        """What served each role (msgf.data.roles.DataRoles.record) and the image size it was read
        at: what summary.json and the checkpoints keep, so that `msgf evaluate` and `msgf
        search-thresholds` read the same images."""
        if self._record is None:  # fixed for the run
            size = self.cfg.image_size
            self._record = {**self.roles.record(self.counts()), "image_size": None if size is None else list(size)}
        return self._record

    def describe(self, which: str) -> str:
        return self.roles.describe(which)

    def classes(self) -> list[str]:
        return list(getattr(self.evaluation("val"), "classes", []))

"""Which data serves each role of a training run: the images it trains on ("train"), picks its
best epochs and exit thresholds on ("val") and reports ("test").

A role's data is a split of the built-in scenes, a manifest or an ImageFolder tree, a file of a
split folder (msgf.data.layout), or, for validation only, images held out of the training file
when no validation set is given (msgf.data.holdout). No image serves two roles: `resolve`
refuses a file named for two roles (by resolved path, and by content: the same bytes under
another name) and files that list the same images. `record()` says which files (with their
SHA-256) and which carve served each role; it goes into summary.json and the checkpoints, and
`from_record` opens the same images again for `msgf evaluate` and `msgf search-thresholds`,
refusing files that changed since.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from msgf.data.holdout import check_fraction, stratified_holdout
from msgf.data.layout import SPLIT_NAMES, fingerprint, split_files

ROLES = ("train", "val", "test")
SYNTHSIGNS = "synthsigns"
ARGUMENTS = {"train": "--data", "val": "--val-data", "test": "--test-data"}


@dataclass(frozen=True)
class Source:
    """The data of one role."""

    name: str  # "synthsigns", or the path of a manifest or ImageFolder tree
    given_as: str  # what named it, for messages: "--val-data", "--data scenes (val.csv)"
    split: str | None = None  # synthsigns: the split drawn
    sha256: str | None = None  # files: msgf.data.layout.fingerprint
    carved: bool = False  # validation held out of the training file

    @property
    def is_file(self) -> bool:
        return self.name != SYNTHSIGNS

    def describe(self) -> str:
        return f"synthsigns split {self.split!r}" if not self.is_file else self.name


def _file_source(path, given_as: str) -> Source:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{given_as}: expected 'synthsigns' or a path, got {type(path).__name__}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{given_as}: {str(path)!r} does not exist")
    return Source(os.fspath(path), given_as, sha256=fingerprint(path))


def _named(value, role: str, given_as: str, synthsigns_split: str) -> Source:
    """A validation or test set as given: the built-in scenes' split, a file, or a split
    folder's file for this role."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value) == SYNTHSIGNS:
        return Source(SYNTHSIGNS, given_as, split=synthsigns_split)
    folders = split_files(value, {name: name for name in SPLIT_NAMES}) if isinstance(value, (str, os.PathLike)) \
        else None
    if folders is not None:
        if role not in folders:
            raise ValueError(f"{given_as}: {os.fspath(value)!r} is a split folder holding {sorted(folders)}, "
                             f"no {role!r}; name the file to use")
        return _file_source(folders[role], f"{given_as} {os.fspath(value)} ({folders[role].name})")
    return _file_source(value, given_as)


class DataRoles:
    """The sources of train, val and test (None: no test set), and the validation carve."""

    def __init__(self, sources: dict[str, Source | None], *, val_fraction: float, val_limit: int | None, seed: int,
                 layout: tuple = SPLIT_NAMES):
        self.sources, self.val_fraction, self.val_limit, self.seed = dict(sources), val_fraction, val_limit, seed
        self.layout = tuple(layout)  # the split folder names a training file's folder is searched for
        self._bases: dict[tuple, object] = {}
        self._split: tuple | None = None  # (kept, held) of the carve, computed once

    # ---------------------------------------------------------------------- resolving

    @classmethod
    def resolve(cls, train, val=None, test=None, *, layout: tuple = SPLIT_NAMES, val_fraction: float = 0.1,
                val_limit: int | None = None, seed: int = 0, synthsigns_splits: tuple[str, str] = ("val", "test"),
                arguments: dict[str, str] = ARGUMENTS) -> DataRoles:
        """The roles of a run trained on `train`: "synthsigns", a manifest, an ImageFolder tree or a
        split folder, whose files named by `layout` (the train, val and test names; None: the
        folder serves no such role) serve the roles that `val` and `test` leave open. Validation
        is carved from a training file when nothing else serves it; without a test set, test is
        None. `arguments` names the three inputs in messages."""
        val_fraction = check_fraction(val_fraction, "val_fraction")
        sources: dict[str, Source | None] = dict.fromkeys(ROLES)
        if isinstance(train, (str, os.PathLike)) and os.fspath(train) == SYNTHSIGNS:
            sources["train"] = Source(SYNTHSIGNS, arguments["train"], split="train")
            for role, split in zip(("val", "test"), synthsigns_splits):
                sources[role] = Source(SYNTHSIGNS, "the built-in scenes", split=split)
        else:
            names = dict(zip(ROLES, layout))
            folders = split_files(train, names) if isinstance(train, (str, os.PathLike)) else None
            if folders is None:
                sources["train"] = _file_source(train, arguments["train"])
            else:
                for role, path in folders.items():
                    sources[role] = _file_source(path, f"{arguments['train']} {os.fspath(train)} ({path.name})")
        for role, value, split in (("val", val, synthsigns_splits[0]), ("test", test, synthsigns_splits[1])):
            if value is not None:
                sources[role] = _named(value, role, arguments[role], split)
        if sources["val"] is None:
            sources["val"] = replace(sources["train"], given_as=f"carved from {sources['train'].given_as}",
                                     carved=True)
        roles = cls(sources, val_fraction=val_fraction, val_limit=val_limit, seed=int(seed), layout=layout)
        roles._check_apart()
        return roles

    def _check_apart(self) -> None:
        """ValueError naming both inputs where two roles share a file, its content or images, or
        disagree on the classes."""
        named = [(role, s) for role, s in self.sources.items() if s is not None and s.is_file and not s.carved]
        for i, (role_a, a) in enumerate(named):
            for role_b, b in named[i + 1:]:
                if Path(a.name).resolve() == Path(b.name).resolve():
                    raise ValueError(f"{a.given_as} and {b.given_as} name the same file {a.name!r} (for {role_a} "
                                     f"and {role_b}): a file serves one role")
                if a.sha256 == b.sha256:
                    raise ValueError(f"{a.given_as} ({a.name}) and {b.given_as} ({b.name}) hold the same data "
                                     f"(sha256 {a.sha256[:12]}...) for {role_a} and {role_b}: a file serves one role")
                shared = sorted(self._images(role_a) & self._images(role_b))
                if shared:
                    raise ValueError(f"{a.given_as} ({a.name}) and {b.given_as} ({b.name}) share {len(shared)} "
                                     f"image(s), e.g. {shared[0]!r}: an image serves one role")
        reference = None
        for role, source in self.sources.items():
            if source is None or source.carved:
                continue
            classes = list(getattr(self._base(role), "classes", []))
            if reference is None:
                reference = (source, classes)
            elif classes != reference[1]:
                raise ValueError(f"{source.given_as} ({source.describe()}) has classes {classes}, "
                                 f"{reference[0].given_as} ({reference[0].describe()}) {reference[1]}; put one "
                                 f"classes.txt beside the manifests so that their label indices agree")

    def _images(self, role: str) -> set[str]:
        dataset = self._base(role)
        return {os.path.normpath(os.path.abspath(dataset.root / record.path)) for record in dataset.records}

    # ---------------------------------------------------------------------- opening

    def has(self, role: str) -> bool:
        return self.sources.get(role) is not None

    def source(self, role: str) -> Source:
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
        if self.sources.get(role) is None:
            raise ValueError(f"no {role} set was given")
        return self.sources[role]

    def _base(self, role: str, augment: bool = False, image_size=None, seed: int = 0, num_samples=None):
        """The whole source of `role` (for synthsigns: `num_samples` scenes drawn with `seed`)."""
        from msgf.data import open_dataset

        source = self.source(role)
        if not source.is_file:
            return open_dataset(SYNTHSIGNS, source.split, seed=seed, augment=augment, num_samples=num_samples,
                                image_size=image_size)
        key = (source.name, augment, None if image_size is None else tuple(image_size))
        if key not in self._bases:
            self._bases[key] = open_dataset(source.name, augment=augment, image_size=image_size)
        return self._bases[key]

    def carve(self):
        """(kept, held) indices into the training file, or None when validation is not carved."""
        if not self.source("val").carved:
            return None
        if self._split is None:
            targets = self._base("train").targets
            kept, held = stratified_holdout(targets, self.val_fraction, self.seed, self.val_limit)
            if len(held) == 0:
                raise ValueError(f"val_fraction: {self.val_fraction} of the {len(targets)} images of "
                                 f"{self.sources['train'].given_as} holds none out for validation; give a "
                                 f"validation set or a larger fraction")
            self._split = (kept, held)
        return self._split

    def open(self, role: str, *, num_samples: int | None = None, augment: bool = False, image_size=None,
             seed: int = 0):
        """The dataset of `role`: its first `num_samples` images (for synthsigns: scenes drawn with
        `seed`). The training images of a carved run exclude the validation ones."""
        source = self.source(role)
        if not source.is_file:
            return self._base(role, augment, image_size, seed, num_samples)
        base = self._base(role, augment, image_size)
        carve = self.carve() if role in ("train", "val") else None
        if carve is None:
            return base if num_samples is None else base.subset(range(min(int(num_samples), len(base))))
        indices = carve[0] if role == "train" else carve[1]
        return base.subset(indices[:num_samples])

    def count(self, role: str, num_samples: int | None = None) -> int:
        return len(self.open(role, num_samples=num_samples))

    # ---------------------------------------------------------------------- what served

    def describe(self, role: str) -> str:
        """A short name of a role's data for report titles."""
        if not self.has(role):
            return "none"
        source = self.source(role)
        return f"carved from {source.name}" if source.carved else source.describe()

    def lines(self, counts: dict[str, int]) -> list[str]:
        """What the log says about each role; `counts`: the images each role uses."""
        lines = []
        for role in ROLES:
            head = f"data: {role:<5} "
            if not self.has(role):
                lines.append(head + "none: no test set was given, so this run reports no test numbers and "
                                    "writes no test trajectories" + self._beside("test"))
                continue
            source = self.source(role)
            if not source.is_file:
                lines.append(head + f"{counts[role]} scenes of {source.describe()} ({source.given_as})")
                continue
            text = f"{counts[role]} images of {source.name} ({source.given_as}; sha256 {source.sha256[:12]})"
            if source.carved:
                text = (f"{counts[role]} images held out of {source.name} (val_fraction {self.val_fraction}, seed "
                        f"{self.seed}, stratified by class: {self._held_per_class()}); never trained on"
                        + self._beside("val"))
            elif role == "train" and self.carve() is not None:
                text += f", less the {len(self.carve()[1])} held out for validation"
            lines.append(head + text)
        return lines

    def _beside(self, role: str) -> str:
        """A hint where the training file lies in a split folder that holds a file for `role`,
        which the run leaves unused because the file, not the folder, was given."""
        train = self.sources["train"]
        if not train.is_file or Path(train.name).is_dir():
            return ""
        folder = Path(train.name).parent
        try:
            found = split_files(folder, {r: name for r, name in zip(ROLES, self.layout)}) or {}
        except ValueError:
            return ""
        if role not in found or Path(found[role]).resolve() == Path(train.name).resolve():
            return ""
        return f" ({found[role]} lies beside the training file, unused: give {ARGUMENTS[role]} {found[role]}, " \
               f"or --data {folder})"

    def _held_per_class(self) -> str:
        base = self._base("train")
        every = base.targets
        targets = [every[i] for i in self.carve()[1]]
        return ", ".join(f"{name} {targets.count(k)}" for k, name in enumerate(base.classes) if k in targets)

    def record(self, counts: dict[str, int] | None = None) -> dict:
        """Plain values (JSON, torch.load(weights_only=True)): per role its source, split, SHA-256,
        the images used, and for a carved validation set the carve's parameters."""
        out = {}
        for role in ROLES:
            source = self.sources.get(role)
            if source is None:
                out[role] = None
                continue
            entry = {"source": source.name, "path": os.path.abspath(source.name) if source.is_file else None,
                     "given_as": source.given_as, "split": source.split, "sha256": source.sha256,
                     "carved_from_train": source.carved}
            if source.carved:
                entry.update(val_fraction=self.val_fraction, limit=self.val_limit)
            if counts is not None:
                entry["images"] = counts.get(role)
            out[role] = entry
        out["seed"] = self.seed  # of the carve, and of the built-in scenes drawn
        return out

    @classmethod
    def from_record(cls, record: dict, *, check: bool = True) -> DataRoles:
        """The roles `record()` wrote, for reading the same images again; with `check`,
        FileNotFoundError for a file that is gone and ValueError for one whose content changed
        since (a carve of another file would hold out other images)."""
        sources = {}
        for role in ROLES:
            entry = record.get(role)
            if entry is None:
                sources[role] = None
                continue
            # the absolute path where it still exists (msgf train may have run elsewhere), else as given
            path = entry.get("path")
            name = path if path is not None and Path(path).exists() else entry["source"]
            source = Source(name, entry.get("given_as") or role, split=entry.get("split"),
                            sha256=entry.get("sha256"), carved=bool(entry.get("carved_from_train")))
            if check and source.is_file and not source.carved:
                if not Path(source.name).exists():
                    raise FileNotFoundError(f"the {role} data of this model, {source.name!r}, does not exist "
                                            f"here (paths are as given to msgf train, relative to where it ran)")
                now = fingerprint(source.name)
                if source.sha256 is not None and now != source.sha256:
                    raise ValueError(f"the {role} data of this model, {source.name!r}, changed since training "
                                     f"(sha256 {source.sha256[:12]}... then, {now[:12]}... now)")
            sources[role] = source
        val = record.get("val") or {}
        return cls(sources, val_fraction=float(val.get("val_fraction", 0.1)), val_limit=val.get("limit"),
                   seed=int(record.get("seed", 0)))

    def roles_of(self, data, split: str | None = None) -> list[str]:
        """The roles whose file is `data` (by resolved path or content; a split folder's `split`
        file), carved validation aside."""
        if not isinstance(data, (str, os.PathLike)) or os.fspath(data) == SYNTHSIGNS or not Path(data).exists():
            return []
        folders = split_files(data, {name: name for name in SPLIT_NAMES})
        if folders is not None:
            if split not in folders:
                return []
            data = folders[split]
        path, digest = Path(data).resolve(), fingerprint(data)
        return [role for role, s in self.sources.items()
                if s is not None and s.is_file and not s.carved
                and (Path(s.name).resolve() == path or s.sha256 == digest)]

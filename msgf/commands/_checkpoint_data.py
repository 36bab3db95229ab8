"""The data a command measures a checkpoint on: what --data names, or, without it, the
validation or test images the checkpoint was trained with, as `msgf train` recorded them
(msgf.data.roles: the same files, the same carve, the same image size and count).

Shared by `msgf evaluate` and `msgf search-thresholds`, so both read a run's real splits and
both say so when the data given is the checkpoint's own training data.
"""
from __future__ import annotations

import sys


def recorded_splits(checkpoint) -> dict | None:
    """What served each role when the checkpoint was trained, or None (written before msgf
    recorded it, or not by msgf train)."""
    from msgf.checkpoint import read_checkpoint

    training = read_checkpoint(checkpoint)["extra"].get("training")
    splits = training.get("splits") if isinstance(training, dict) else None
    return splits if isinstance(splits, dict) else None


def open_data(checkpoint, data, split: str, role: str, *, num_samples, image_size, seed: int, command: str,
              option: str = "--data"):
    """(dataset, what it is, a JSON-able key of exactly which images at which size): `data`'s
    `split` when given, else the checkpoint's recorded `role` ("val" or "test") set.

    Recorded sets are read as training read them: at its image size and number of images unless
    `image_size` / `num_samples` say otherwise, with its seed. Given data that is the
    checkpoint's training file gets a warning on stderr: its scores are not held-out numbers."""
    from msgf.data import open_dataset
    from msgf.data.roles import DataRoles

    record = recorded_splits(checkpoint)
    if data is None:
        if record is None or record.get(role) is None:
            why = ("it keeps no record of its data: written by an msgf train older than that record, or not by "
                   "msgf train" if record is None else f"it was trained without a {role} set")
            raise ValueError(f"{option}: {checkpoint} records no {role} set to use ({why}); give {option}")
        roles = DataRoles.from_record(record)
        size = image_size if image_size is not None else record.get("image_size")
        count = num_samples if num_samples is not None else record[role].get("images")
        dataset = roles.open(role, num_samples=count, image_size=size, seed=roles.seed)
        name = f"the {role} set of {checkpoint} ({roles.describe(role)})"
        return dataset, name, [record[role], record.get("seed"), size, count]
    if record is not None and "train" in DataRoles.from_record(record, check=False).roles_of(data, split):
        print(f"msgf {command}: warning: {data} is the training data of {checkpoint} (same file or same content): "
              f"scores on it are scores on images the model was trained on, not held-out numbers", file=sys.stderr)
    dataset = open_dataset(data, split, seed=seed, num_samples=num_samples, image_size=image_size)
    return dataset, str(data), [data, split, num_samples, image_size, seed]

"""The trajectory file: every sample's outcome at every node of the tree of size paths.

This is the contract between msgf (which exports it from a trained model) and this package
(which only reads it). The layout is documented in README.md; `Trajectories` checks it on
construction, so a malformed file fails on load with the offending field named instead of
producing a silently wrong threshold search later.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from threshold_search.tree import level_offset, num_nodes

REQUIRED_FIELDS = ("sizes", "T", "labels", "conf", "correct", "pred", "macs")
OPTIONAL_FIELDS = ("entropy",)


def _integer_array(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {array.shape}")
    return array.astype(np.int64, copy=False)


def _float_array(name: str, value, shape: tuple[int, ...], dtype) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected a float array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype)
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s) (NaN or inf), first at index "
            f"{tuple(int(i) for i in where)}: {array[tuple(where)]}"
        )
    return array


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Per-sample outcomes at every node of the size-path tree (N samples, M nodes).

    Attributes mirror the `.npz` fields: `sizes` (K,), `T`, `labels` (N,), `conf` float32
    (N, M), `correct` bool (N, M), `pred` int64 (N, M), `macs` float64 (M,) cumulative
    Multiply-Adds of the path ending at each node, and optional `entropy` float32 (N, M).
    """

    sizes: np.ndarray
    T: int
    labels: np.ndarray
    conf: np.ndarray
    correct: np.ndarray
    pred: np.ndarray
    macs: np.ndarray
    entropy: np.ndarray | None = None

    def __post_init__(self) -> None:
        sizes = _integer_array("sizes", self.sizes, 1)
        if sizes.size == 0 or (sizes <= 0).any():
            raise ValueError(f"sizes: expected at least one positive patch size, got {sizes.tolist()}")
        T = np.asarray(self.T)
        if T.ndim != 0 or T.dtype == bool or not np.issubdtype(T.dtype, np.integer) or int(T) < 1:
            raise ValueError(f"T: expected an integer >= 1, got {self.T!r}")
        T = int(T)
        labels = _integer_array("labels", self.labels, 1)
        N, K = labels.shape[0], sizes.shape[0]
        if N == 0:
            raise ValueError("labels: expected at least one sample, got 0")
        M = num_nodes(T, K)
        conf = _float_array("conf", self.conf, (N, M), np.float32)
        if (conf < 0).any() or (conf > 1).any():
            raise ValueError("conf: max-softmax confidences must lie in [0, 1]")
        correct = np.asarray(self.correct)
        if correct.dtype != bool:
            raise ValueError(f"correct: expected a bool array, got dtype {correct.dtype}")
        if correct.shape != (N, M):
            raise ValueError(f"correct: expected shape {(N, M)}, got {correct.shape}")
        pred = _integer_array("pred", self.pred, 2)
        if pred.shape != (N, M):
            raise ValueError(f"pred: expected shape {(N, M)}, got {pred.shape}")
        if not np.array_equal(correct, pred == labels[:, None]):
            raise ValueError("correct: must equal (pred == labels[:, None]) at every node")
        macs = _float_array("macs", self.macs, (M,), np.float64)
        if (macs <= 0).any():
            raise ValueError("macs: cumulative MACs must be positive at every node")
        for t in range(2, T + 1):
            # A child's cumulative cost includes its parent's: it can never be cheaper.
            children = np.arange(level_offset(t, K), level_offset(t + 1, K))
            parents = level_offset(t - 1, K) + (children - level_offset(t, K)) // K
            if (macs[children] < macs[parents]).any():
                raise ValueError(f"macs: level {t} has a node cheaper than its parent (not cumulative)")
        entropy = None
        if self.entropy is not None:
            entropy = _float_array("entropy", self.entropy, (N, M), np.float32)
            if (entropy < 0).any():
                raise ValueError("entropy: must be >= 0")
        for name, value in dict(sizes=sizes, T=T, labels=labels, conf=conf, correct=correct,
                                pred=pred, macs=macs, entropy=entropy).items():
            object.__setattr__(self, name, value)

    @property
    def num_samples(self) -> int:
        return self.labels.shape[0]

    @property
    def num_sizes(self) -> int:
        return self.sizes.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.macs.shape[0]

    @property
    def eta_shape(self) -> tuple[int, int]:
        """Shape of one threshold set: (T-1, K)."""
        return (self.T - 1, self.num_sizes)

    def subset(self, samples) -> Trajectories:
        """The same tree restricted to some samples (an index or bool array), e.g. a split."""
        samples = np.asarray(samples)
        pick = lambda a: None if a is None else a[samples]  # noqa: E731
        return Trajectories(sizes=self.sizes, T=self.T, labels=self.labels[samples],
                            conf=self.conf[samples], correct=self.correct[samples],
                            pred=self.pred[samples], macs=self.macs, entropy=pick(self.entropy))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectories:
        """Read and validate a trajectory `.npz`; ValueError names what is wrong with it."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                fields = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise ValueError(f"{path}: not a readable .npz trajectory file ({error})") from error
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        unknown = sorted(set(fields) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**fields)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write the `.npz` atomically (temp file + rename), so readers never see half a file."""
        path = Path(path)
        fields = dict(sizes=self.sizes, T=np.int64(self.T), labels=self.labels, conf=self.conf,
                      correct=self.correct, pred=self.pred, macs=self.macs)
        if self.entropy is not None:
            fields["entropy"] = self.entropy
        handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=path.name, suffix=".tmp")
        # mkstemp makes a private (0600) file; give the result the usual 0666-less-umask mode.
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **fields)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise

"""Accuracy and average MACs of threshold sets under the exit rule of Eq. 9.

At a node of level t < T a sample with score c exits if c >= max_k eta[t-1, k] (threshold_search.rule);
otherwise it continues with the k of the smallest eta[t-1, k] > c (ties: the smaller k). Level T
always exits. With the thresholds of one level sorted stably (ties keep the smaller k first) as
e_0 <= ... <= e_{K-1}, the decision is d = #{j : c >= e_j}: d == K exits, d < K continues with
the size order[d]. Each threshold is the lowest score of the block above it: [e_{j-1}, e_j)
continues with order[j] and [e_{K-1}, inf) exits, so at equality both rules read the same way.

Why it is fast (a search scores tens of thousands of sets on 50,000 samples):
- samples are kept sorted by their glance score, so the glance splits them into K+1
  contiguous blocks found by binary search: O(K log N) per set instead of O(N);
- deeper levels touch only the samples that reached a node, as contiguous slices of
  per-node rows (views, no copies) or index subsets, never a (P, N, M) array;
- every per-sample step is a float32 comparison or a boolean and/count, which run at a few
  hundredths of a nanosecond per element; gathers, bincount and sorting (10-40x slower) are
  left to levels below the last deciding one, which exist only for T >= 5;
- the last deciding level keeps its parent's slice plus a mask instead of compacting it.

Thresholds are compared in float32 after rounding each one *up* to a float32: for a float32
score c and any real eta, c >= eta holds exactly when c >= round_up(eta), so the result equals
the rule evaluated in float64. They are sorted before rounding, as the float64 rule sorts them:
two thresholds that round to one float32 keep their real order.
"""
from __future__ import annotations

import weakref

import numpy as np

from threshold_search.criteria import exit_scores
from threshold_search.trajectories import Trajectories
from threshold_search.tree import level_offset, node_level

_MAX_SIZES = 255  # decisions 0..K are counted in uint8


def _round_up_to_float32(values: np.ndarray) -> np.ndarray:
    rounded = values.astype(np.float32)
    down = rounded.astype(np.float64) < values
    rounded[down] = np.nextafter(rounded[down], np.float32(np.inf))
    return rounded


def check_etas(etas, eta_shape: tuple[int, int], name: str = "etas") -> np.ndarray:
    """A float64 (P, T-1, K) array, or a TypeError/ValueError naming `name`."""
    array = np.asarray(etas)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating)
                                   or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name}: expected a numeric array of thresholds, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[1:] != eta_shape:
        raise ValueError(f"{name}: expected shape (P, T-1, K) = (P, {eta_shape[0]}, {eta_shape[1]}), "
                         f"got {array.shape}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name}: thresholds must not be NaN (use -inf / inf for never / always)")
    return array


class Evaluator:
    """Evaluates threshold sets on one trajectory set under one exit criterion.

    Building it sorts and repacks the trajectories once; `evaluate_many` then scores any
    number of sets against them.
    """

    def __init__(self, traj: Trajectories, criterion: str = "confidence", seed: int = 0):
        if not isinstance(traj, Trajectories):
            raise TypeError(f"traj: expected Trajectories, got {type(traj).__name__}")
        K = traj.num_sizes
        if K > _MAX_SIZES:
            raise ValueError(f"traj: at most {_MAX_SIZES} candidate sizes are supported, got {K}")
        # No reference to traj itself: the module cache keys evaluators weakly on it.
        self.eta_shape, self.criterion, self.seed = traj.eta_shape, criterion, seed
        self.N, self.K, self.T, self.M = traj.num_samples, K, traj.T, traj.num_nodes
        scores = exit_scores(traj, criterion, seed)
        perm = np.argsort(scores[:, 0], kind="stable")
        self.glance_sorted = np.ascontiguousarray(scores[perm, 0])
        # (M, N): one contiguous row per node, samples in glance order.
        self.node_scores = np.ascontiguousarray(scores[perm].T)
        self.node_correct = np.ascontiguousarray(traj.correct[perm].T)
        self.macs = traj.macs
        levels = [node_level(m, K) for m in range(self.M)]
        self.first_child = np.array([level_offset(t + 1, K) + (m - level_offset(t, K)) * K
                                     for m, t in enumerate(levels)])
        # Prefix sums of correctness in glance order for the glance and its children: glance
        # blocks are contiguous, so these levels are scored in O(1) when they are the last.
        rows = min(self.M, 1 + K)
        self.correct_prefix = np.zeros((rows, self.N + 1), np.int64)
        np.cumsum(self.node_correct[:rows], axis=1, out=self.correct_prefix[:, 1:])

    def evaluate(self, eta) -> tuple[float, float]:
        """(accuracy, mean MACs per sample) of one (T-1, K) threshold set."""
        array = np.asarray(eta)
        if array.shape != self.eta_shape:
            raise ValueError(f"eta: expected shape (T-1, K) = {self.eta_shape}, got {array.shape}")
        accuracy, macs = self.evaluate_many(check_etas(array[None], self.eta_shape, "eta"))
        return float(accuracy[0]), float(macs[0])

    def evaluate_many(self, etas) -> tuple[np.ndarray, np.ndarray]:
        """(accuracy (P,), mean MACs (P,)) of a (P, T-1, K) population of threshold sets."""
        n_correct, exits = self.exit_counts(etas)
        # Accumulated node by node in a fixed order, not `exits @ macs`: BLAS (or a reduction)
        # may sum a batch in another order than a single row, and a set must cost exactly the
        # same alone or in a population, or a budget check could flip on the last bit.
        total = np.zeros(len(exits))
        for node, cost in enumerate(self.macs):
            total += exits[:, node] * cost
        return n_correct / self.N, total / self.N

    def exit_counts(self, etas) -> tuple[np.ndarray, np.ndarray]:
        """(correct count (P,), samples exiting at each node (P, M)) for a population."""
        etas = check_etas(etas, self.eta_shape)
        P = etas.shape[0]
        n_correct = np.zeros(P, np.int64)
        exits = np.zeros((P, self.M), np.int64)
        if self.T == 1:
            n_correct[:] = self.correct_prefix[0, -1]
            exits[:, 0] = self.N
            return n_correct, exits
        order = np.argsort(etas, axis=2, kind="stable")
        thresholds = np.take_along_axis(_round_up_to_float32(etas), order, axis=2)
        # The glance decision of every set at once: block edges in glance-sorted order
        # (bounds[j] samples score below e_j).
        bounds = np.searchsorted(self.glance_sorted, thresholds[:, 0, :].ravel(), side="left")
        bounds = bounds.reshape(P, self.K)
        for p in range(P):
            n_correct[p] = self._one(thresholds[p], order[p], bounds[p], exits[p])
        return n_correct, exits

    def _one(self, thresholds, order, bounds, exits) -> int:
        """Correct count of one set; `exits` (M,) receives the samples leaving at each node.

        A work item is (node, level, samples, mask): samples a slice or an index array into the
        glance-sorted rows, mask None or a bool array over them marking who is really there.
        """
        N, K, T = self.N, self.K, self.T
        scores, correct, first_child = self.node_scores, self.node_correct, self.first_child
        top = int(bounds[K - 1])
        exits[0] = N - top
        n_correct = int(self.correct_prefix[0, N] - self.correct_prefix[0, top])
        stack = []
        lo = 0
        for j in range(K):
            hi = int(bounds[j])
            if hi > lo:
                child = 1 + int(order[0, j])
                if T == 2:
                    exits[child] += hi - lo
                    n_correct += int(self.correct_prefix[child, hi] - self.correct_prefix[child, lo])
                else:
                    stack.append((child, 2, slice(lo, hi), None))
            lo = hi
        while stack:
            node, t, samples, mask = stack.pop()
            x = scores[node][samples]
            level = thresholds[t - 1]
            children = first_child[node] + order[t - 1]
            if t == T - 1:
                # Leaves follow: count each outcome with boolean masks, no compaction.
                beyond_previous = None  # x >= e_{j-1}, i.e. decision >= j
                for j in range(K + 1):
                    beyond = x >= level[j] if j < K else None
                    if j == 0:
                        chosen = ~beyond
                    elif j < K:
                        chosen = beyond_previous & ~beyond
                    else:
                        chosen = beyond_previous
                    if mask is not None:
                        chosen = chosen & mask
                    count = np.count_nonzero(chosen)
                    if count:
                        target = node if j == K else int(children[j])
                        exits[target] += count
                        n_correct += np.count_nonzero(chosen & correct[target][samples])
                    beyond_previous = beyond
                continue
            decision = (x >= level[0]).view(np.uint8)
            for k in range(1, K):
                decision = decision + (x >= level[k])
            leaving = decision == K
            if mask is not None:
                leaving &= mask
            exits[node] += np.count_nonzero(leaving)
            n_correct += np.count_nonzero(leaving & correct[node][samples])
            if t + 1 == T - 1:
                for j in range(K):
                    chosen = decision == j
                    if mask is not None:
                        chosen &= mask
                    stack.append((int(children[j]), t + 1, samples, chosen))
                continue
            # Deeper trees (T >= 5): compact, then group by child with one stable counting sort.
            if isinstance(samples, slice):
                samples = np.arange(samples.start, samples.stop)
            if mask is not None:
                keep = np.flatnonzero(mask)
                samples, decision = samples[keep], decision[keep]
            counts = np.bincount(decision, minlength=K + 1)
            grouped = samples[np.argsort(decision, kind="stable")]
            start = 0
            for j in range(K):
                end = start + int(counts[j])
                if end > start:
                    stack.append((int(children[j]), t + 1, grouped[start:end], None))
                start = end
        return n_correct


# Evaluators are cached per trajectory object so repeated evaluate() calls reuse the sorting.
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluator(traj: Trajectories, criterion: str = "confidence", seed: int = 0) -> Evaluator:
    """The cached Evaluator of `traj` for this criterion (and seed, for `random`)."""
    if not isinstance(traj, Trajectories):
        raise TypeError(f"traj: expected Trajectories, got {type(traj).__name__}")
    per_traj = _cache.setdefault(traj, {})
    key = (criterion, seed if criterion == "random" else 0)
    if key not in per_traj:
        per_traj[key] = Evaluator(traj, criterion, key[1])
    return per_traj[key]


def evaluate(traj: Trajectories, eta, criterion: str = "confidence", seed: int = 0) -> tuple[float, float]:
    """(accuracy, mean MACs per sample) of one (T-1, K) threshold set under Eq. 9."""
    return evaluator(traj, criterion, seed).evaluate(eta)


def exit_nodes(traj: Trajectories, eta, criterion: str = "confidence", seed: int = 0) -> np.ndarray:
    """The node where each sample leaves under one (T-1, K) threshold set, as an (N,) array.

    The per-sample view that paired comparisons need (which scenes one set gets right and
    another wrong); `Evaluator` only counts. It walks all samples a level at a time with the
    decision of the module docstring, comparing in float64 (exact for float32 scores)."""
    if not isinstance(traj, Trajectories):
        raise TypeError(f"traj: expected Trajectories, got {type(traj).__name__}")
    eta = check_etas(np.asarray(eta)[None], traj.eta_shape, "eta")[0]
    scores = exit_scores(traj, criterion, seed)
    K = traj.num_sizes
    order = np.argsort(eta, axis=1, kind="stable")  # ties: the smaller k first
    sorted_eta = np.take_along_axis(eta, order, axis=1)
    nodes = np.zeros(traj.num_samples, np.int64)
    going = np.arange(traj.num_samples)
    for t in range(1, traj.T):
        score = scores[going, nodes[going]].astype(np.float64)
        decision = (score[:, None] >= sorted_eta[t - 1][None, :]).sum(1)
        stay = decision < K
        going = going[stay]
        first_child = level_offset(t + 1, K) + (nodes[going] - level_offset(t, K)) * K
        nodes[going] = first_child + order[t - 1][decision[stay]]
    return nodes


def correct_per_sample(traj: Trajectories, eta, criterion: str = "confidence", seed: int = 0) -> np.ndarray:
    """(N,) bool: whether each sample's prediction where it exits under `eta` is right."""
    nodes = exit_nodes(traj, eta, criterion, seed)
    return traj.correct[np.arange(traj.num_samples), nodes].astype(bool)


def evaluate_many(traj: Trajectories, etas, criterion: str = "confidence",
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy (P,), mean MACs (P,)) of a (P, T-1, K) population, in one pass."""
    return evaluator(traj, criterion, seed).evaluate_many(etas)

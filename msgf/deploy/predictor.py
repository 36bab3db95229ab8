"""`OnnxPredictor`: an `msgf export` directory run with numpy and onnxruntime only (no torch).

The same Eq. 9 loop as msgf.engine.predict_from, over region readers as
`Predictor.predict_regions` reads them: each image's glance input is its decoded pixels (JPEG,
PNG, arrays) or the reader's `read_glance` at the glance size (TIFF), each focus patch is
`read_region` at the box of the policy's location. The batch shrinks as samples exit; the
samples still running are grouped by their next patch size. Importing this module imports
neither torch nor torchvision: tests/deploy checks that in a fresh interpreter.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort

from msgf.data.regions import as_arrays, as_rgb, check_readers, read_patch_with_margin, reader_name
from msgf.deploy.manifest import ManifestError, eta_of, read_manifest
from msgf.deploy.resize import glance_inputs
from msgf.deploy.rules import EXIT, focus_box, next_size_index
from msgf.infer.results import ImagePrediction, Step
from msgf.infer.streaming import RegionStreaming
from msgf.memory import release_memory
from msgf.threshold_sets import choose, read_threshold_sets, threshold_sets

GLANCE_CHUNK = 2  # glances per run of f_G's graph

_ARENA_SHARED = False


def _share_one_arena() -> None:
    """Register, once per process, the CPU arena that sessions with `session.use_env_allocators`
    share; it grows by what is asked (not to the next power of two)."""
    global _ARENA_SHARED
    if not _ARENA_SHARED:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        same_as_requested = 1
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, same_as_requested, -1, -1))
        _ARENA_SHARED = True


class OnnxPredictor(RegionStreaming):
    """`OnnxPredictor(DIR, budget="1.5G")` or `OnnxPredictor(DIR, thresholds=...)`.

    DIR: an `msgf export` output. budget: MACs per image whose thresholds the export carries.
    thresholds: a JSON path or a mapping (msgf.engine.Thresholds.to_json(), a threshold_search
    Result or Front, or the report of `msgf search-thresholds --out`) or msgf.engine.Thresholds;
    with several budgets there, `budget` picks one. With neither, the export's thresholds if it
    carries exactly one set.
    threads: onnxruntime intra-op threads per graph (default: onnxruntime's).
    """

    def __init__(self, directory, *, budget=None, thresholds=None, threads: int | None = None):
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive int or None, got {threads!r}")
        self.manifest = read_manifest(directory)
        self.directory = Path(directory)
        cfg = self.manifest["config"]
        self.config = SimpleNamespace(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        self.class_names = list(self.config.class_names) or [str(k) for k in range(self.config.num_classes)]
        self.eta = _choose_eta(self.manifest, budget, thresholds, self.config)
        self.step_macs = np.asarray(self.manifest["step_macs"], dtype=np.int64)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Each of the ~10 sessions has its own thread pool and they run one after another: pools
        # spin-waiting after their run would take the CPU from the next graph and from the
        # threads reading images ahead (msgf infer), so idle threads sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The graphs run one after another, so one arena serves them all: with an arena per
        # session (onnxruntime's default) each kept its own high-water mark, and `msgf infer`
        # over 1000 960x1280 JPEGs peaked at 1.3 GB (batch 32). Without any arena every buffer
        # is a fresh malloc and throughput fell by a fifth (a half with large buffers mmapped).
        options.add_session_config_entry("session.use_env_allocators", "1")
        _share_one_arena()
        graphs = self.manifest["graphs"]

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(self.directory / name), options, providers=["CPUExecutionProvider"])

        self._glance, self._glance_encoder = session(graphs["glance"]), session(graphs["glance_encoder"])
        self._crop = {int(k): session(v) for k, v in graphs["crop"].items()}
        self._focus_encoder = {int(k): session(v) for k, v in graphs["focus_encoder"].items()}
        self._classify = [session(name) for name in graphs["classify"]]
        self._policy = session(graphs["policy"])
        self._filters: dict = {}  # glance filter per input size (it depends on nothing else)
        release_memory()  # the graphs' protobufs, parsed and dropped

    # ------------------------------------------------------------------ public API

    def predict(self, images) -> list[ImagePrediction]:
        """Decoded images: a uint8 (N, H, W, C) array or a list of uint8 (H, W, C) arrays of any sizes."""
        from msgf.data.regions import ArrayImage

        return self.predict_regions([ArrayImage(a) for a in as_arrays(images)])

    def predict_regions(self, readers) -> list[ImagePrediction]:
        """Region readers (msgf.data.regions.open_image, or anything with .shape, .read_region and
        .read_glance): the glance and each focus patch are read as regions, never the whole image."""
        readers = check_readers(readers)
        try:
            return self._run(readers)
        finally:
            release_memory()

    # ------------------------------------------------------------------ the Eq. 9 loop

    def _run(self, readers) -> list[ImagePrediction]:
        cfg = self.config
        image_hw = [tuple(int(v) for v in reader.shape[:2]) for reader in readers]
        smallest = min(min(hw) for hw in image_hw)
        if smallest < max(cfg.patch_sizes):
            name = reader_name(readers[[min(hw) for hw in image_hw].index(smallest)])
            raise ValueError(f"readers: {name} is {smallest} px on its short side, smaller than the "
                             f"model's largest patch ({max(cfg.patch_sizes)} px)")
        n, T = len(readers), cfg.T
        record = _Record(n, T, cfg.num_classes)
        features, fmap = self._glance_step(readers)
        logits, conf, memory = self._classify[0].run(None, {"features": features})
        state = _policy_state(n, self.manifest["shapes"], image_hw)
        rows, step, last = np.arange(n), 1, np.zeros(n, dtype=np.int64)
        record.sizes[:, 0] = cfg.glance_size
        record.macs[:] = self.step_macs[0, 0]
        record.step(rows, step, logits, conf)
        while True:
            choice = next_size_index(self.eta, step, conf)
            done = choice == EXIT
            record.finish(rows[done], step, logits[done], conf[done])
            going = ~done
            if not going.any():
                break
            rows, choice, fmap, memory, state, last = (a[going] for a in (rows, choice, fmap, memory, state, last))
            location, state = self._policy.run(None, {"feature_map": fmap, "last_size_index": last,
                                                      "next_size_index": choice, "state": state})
            features, fmap = self._focus_step(readers, image_hw, rows, choice, location)
            step += 1
            feeds = {"features": features, "memory": memory}
            logits, conf, memory = self._classify[step - 1].run(None, feeds)
            sides = np.asarray(cfg.patch_sizes, dtype=np.int64)[choice]
            record.sizes[rows, step - 1] = sides
            record.locs[rows, step - 1] = location
            record.macs[rows] += self.step_macs[step - 1, choice]
            record.step(rows, step, logits, conf)
            last = choice + 1
        return self._results(record, image_hw)

    def _glance_step(self, readers):
        """Features and maps of every glance.

        The resize runs one image at a time: its float windows of a decoded 960x1280 image are
        about 30 MB, of a batch of 32 they would be a gigabyte. The encoder then runs on the batch.
        """
        g = self.config.glance_size
        glance = np.empty((len(readers), 3, g, g), dtype=np.float32)
        for row, reader in enumerate(readers):
            pixels = _glance_pixels(reader, g)
            glance[row] = self._glance.run(None, {"images": pixels[None], **self._glance_filter(pixels.shape[:2])})[0][0]
        # f_G's activations grow with its batch, and the arena keeps its largest: a few glances
        # at a time are as fast (measured: 2 against 8 at once, within 2%) and need a quarter
        chunks = [self._glance_encoder.run(None, {"glance": glance[k:k + GLANCE_CHUNK]})
                  for k in range(0, len(glance), GLANCE_CHUNK)]
        features, fmap = (np.concatenate(parts) for parts in zip(*chunks))
        return features, fmap

    def _glance_filter(self, hw) -> dict:
        key = tuple(int(v) for v in hw)
        if key not in self._filters:
            if len(self._filters) > 64:  # a stream of many sizes: keep the cache small
                self._filters.clear()
            g = self.config.glance_size
            self._filters[key] = glance_inputs(key, (g, g))
        return self._filters[key]

    def _focus_step(self, readers, image_hw, rows, choice, location):
        """f_L on each sample's patch, patches of one size cropped and encoded together. Each patch
        is read as a region with a one-pixel margin (read_patch_with_margin: a patch resized up
        for f_L reads it), so no whole image is ever converted to float."""
        features = fmap = None
        for k in np.unique(choice):
            members = np.nonzero(choice == k)[0]
            side = self.config.patch_sizes[int(k)]
            canvas = np.empty((len(members), side + 2, side + 2, 3), dtype=np.uint8)
            for i, b in enumerate(members):
                x0, y0, _, _ = focus_box(location[b], side, image_hw[rows[b]])
                canvas[i] = read_patch_with_margin(readers[rows[b]], y0, x0, side)
            boxes = np.zeros((len(members), 5), dtype=np.float32)
            boxes[:, 0] = np.arange(len(members))
            boxes[:, 1:3], boxes[:, 3:] = 1, side + 1  # the patch inside its one-pixel margin
            patches = self._crop[side].run(None, {"images": canvas, "boxes": boxes})[0]
            f, m = self._focus_encoder[side].run(None, {"patches": patches})
            if features is None:
                features = np.empty((len(rows), *f.shape[1:]), dtype=f.dtype)
                fmap = np.empty((len(rows), *m.shape[1:]), dtype=m.dtype)
            features[members], fmap[members] = f, m
        return features, fmap

    def _results(self, record: "_Record", image_hw) -> list[ImagePrediction]:
        glance = self.config.glance_size
        results = []
        for i, hw in enumerate(image_hw):
            steps = [Step(1, glance, (0, 0, hw[1], hw[0]), int(record.step_pred[i, 0]),
                          float(record.step_conf[i, 0]))]
            for t in range(2, int(record.exit_step[i]) + 1):
                side = int(record.sizes[i, t - 1])
                steps.append(Step(t, side, focus_box(record.locs[i, t - 1], side, hw),
                                  int(record.step_pred[i, t - 1]), float(record.step_conf[i, t - 1])))
            pred = int(record.pred[i])
            results.append(ImagePrediction(pred=pred, class_name=self.class_names[pred],
                                           confidence=float(record.conf[i]), exit_step=int(record.exit_step[i]),
                                           macs=int(record.macs[i]), image_hw=hw, steps=steps))
        return results


class _Record:
    """Per-sample results filled in as samples take steps and exit (as the engine's)."""

    def __init__(self, n: int, T: int, num_classes: int):
        self.pred = np.zeros(n, dtype=np.int64)
        self.conf = np.zeros(n, dtype=np.float32)
        self.exit_step = np.zeros(n, dtype=np.int64)
        self.sizes = np.zeros((n, T), dtype=np.int64)
        self.locs = np.full((n, T, 2), np.nan, dtype=np.float32)
        self.macs = np.zeros(n, dtype=np.int64)
        self.logits = np.zeros((n, num_classes), dtype=np.float32)
        self.step_pred = np.full((n, T), -1, dtype=np.int64)
        self.step_conf = np.full((n, T), np.nan, dtype=np.float32)

    def step(self, rows, t, logits, conf) -> None:
        self.step_pred[rows, t - 1] = logits.argmax(1)
        self.step_conf[rows, t - 1] = conf

    def finish(self, rows, t, logits, conf) -> None:
        self.pred[rows] = logits.argmax(1)
        self.conf[rows] = conf
        self.exit_step[rows] = t
        self.logits[rows] = logits


def _policy_state(n: int, shapes: dict, image_hw) -> np.ndarray:
    """pi's initial state: zeros, and for the spatial head each image's full-resolution (H, W)
    in the last two columns (LocationPolicy.initial_hidden), also where the glance was read from
    a smaller pyramid level."""
    state = np.zeros((n, int(shapes["policy_state"])), dtype=np.float32)
    if shapes.get("policy_state_image_size"):
        state[:, -2:] = np.asarray(image_hw, dtype=np.float32)
    return state


def _glance_pixels(reader, size: int) -> np.ndarray:
    array = getattr(reader, "array", None)
    pixels = array if isinstance(array, np.ndarray) else reader.read_glance(size, size)
    return np.ascontiguousarray(as_rgb(np.asarray(pixels), reader_name(reader)))


def _choose_eta(manifest: dict, budget, thresholds, cfg) -> np.ndarray:
    """eta of the set to run: from `thresholds` when given, else from the export's (the
    checkpoint's) sets; `budget` picks one where there are several (msgf.threshold_sets.choose)."""
    if thresholds is None:
        sets, source = manifest["thresholds"], "the export"
        remedy = "search it on the checkpoint (msgf search-thresholds --ckpt) and export it again"
    else:
        sets = _threshold_sets(thresholds)
        source = os.fspath(thresholds) if isinstance(thresholds, (str, os.PathLike)) else "the thresholds given"
        remedy = "search that budget with `msgf search-thresholds --out`"
    chosen = sets[choose([t.get("budget") for t in sets], budget, source=source, remedy=remedy)]
    try:
        eta = np.asarray(eta_of(chosen), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"thresholds: eta must be a (T-1, K) array of numbers ({err})") from None
    if eta.shape != (cfg.T - 1, len(cfg.patch_sizes)):
        raise ValueError(f"thresholds: eta has shape {eta.shape}, the model needs ({cfg.T - 1}, {len(cfg.patch_sizes)})")
    sizes = chosen.get("sizes")
    if sizes is not None and tuple(sizes) != tuple(cfg.patch_sizes):
        raise ValueError(f"thresholds: searched for sizes {tuple(sizes)}, the model has {tuple(cfg.patch_sizes)}")
    return eta


def _threshold_sets(thresholds) -> list[dict]:
    """The sets of a JSON path, a mapping (any layout of msgf.threshold_sets) or msgf.engine.Thresholds."""
    if isinstance(thresholds, (str, os.PathLike)):
        return read_threshold_sets(thresholds)
    if hasattr(thresholds, "to_dict"):
        return [thresholds.to_dict()]
    if isinstance(thresholds, dict):
        return threshold_sets(thresholds, "thresholds")
    raise TypeError(f"thresholds: expected a JSON path, a mapping with 'eta' or msgf.engine.Thresholds, "
                    f"got {type(thresholds).__name__}")


__all__ = ["ManifestError", "OnnxPredictor"]

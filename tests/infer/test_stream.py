"""Predictor.predict_stream and the read-ahead under it: input order, the same results as the
batch API, bounded memory, errors in place, nothing left open."""
import threading
import time

import pytest

import msgf
from msgf.data.regions import open_image
from msgf.infer.stream import GlanceReadAhead, read_ahead


@pytest.fixture
def inputs(photo_files, small_tiff, tmp_path):
    broken = tmp_path / "broken.jpg"
    data = photo_files["astronaut"].read_bytes()
    broken.write_bytes(data[:len(data) // 3])
    paths = [str(p) for p in photo_files.values()]
    return [*paths, str(small_tiff[0]), str(broken), *paths[:2]]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_input_order_equal_the_batch_api(ckpt, inputs, workers):
    predictor = msgf.Predictor(ckpt, budget=2e8)
    streamed = list(predictor.predict_stream(inputs, batch_size=3, workers=workers))
    assert [item for item, _ in streamed] == inputs
    # the oracle: the batch API on the same batches (readable inputs only), one call per batch
    for first in range(0, len(inputs), 3):
        chunk = streamed[first:first + 3]
        readable = [item for item, result in chunk if not isinstance(result, Exception)]
        expected = predictor.predict_regions([open_image(p) for p in readable]) if readable else []
        got = [result for _, result in chunk if not isinstance(result, Exception)]
        assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    errors = [(item, result) for item, result in streamed if isinstance(result, Exception)]
    assert len(errors) == 1 and errors[0][0].endswith("broken.jpg") and "broken.jpg" in str(errors[0][1])


def test_a_tiff_glance_read_ahead_is_the_readers_own(small_tiff):
    reader = open_image(small_tiff[0])
    ahead = GlanceReadAhead(open_image(small_tiff[0]), 32)
    assert (ahead.read_glance(32, 32) == reader.read_glance(32, 32)).all()
    assert (ahead.read_glance(16, 24) == reader.read_glance(16, 24)).all()  # another size: read on demand
    assert (ahead.read_region(5, 7, 20, 30) == reader.read_region(5, 7, 20, 30)).all()
    ahead.close()
    reader.close()


class _Opener:
    """An open function that records how many items are opened and not yet consumed."""

    def __init__(self):
        self.lock, self.opened, self.consumed, self.most_ahead, self.closed = threading.Lock(), 0, 0, 0, 0

    def __call__(self, item):
        time.sleep(0.002)
        if item == "bad":
            raise ValueError("bad input")
        with self.lock:
            self.opened += 1
            self.most_ahead = max(self.most_ahead, self.opened - self.consumed)
        return self

    def close(self):
        with self.lock:
            self.closed += 1


def test_read_ahead_stays_within_its_depth_and_keeps_order():
    opener = _Opener()
    items = list(range(200)) + ["bad"] + list(range(200, 260))
    seen = []
    for item, value in read_ahead(items, opener, workers=4, depth=6):
        seen.append(item)
        if item == "bad":
            assert isinstance(value, ValueError)
        else:
            opener.consumed += 1
            time.sleep(0.001)  # a consumer slower than the readers
    assert seen == items and opener.most_ahead <= 6


def test_stopping_early_closes_what_was_read_ahead():
    opener = _Opener()
    stream = read_ahead(range(100), opener, workers=2, depth=5)
    for _ in zip(range(3), stream):
        pass
    stream.close()
    assert opener.opened <= 3 + 5 and opener.closed == opener.opened - 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="workers"):
        list(read_ahead([1], lambda x: x, workers=-1, depth=1))
    with pytest.raises(ValueError, match="depth"):
        list(read_ahead([1], lambda x: x, workers=1, depth=0))
    with pytest.raises(RuntimeError, match="boom"):  # not an input error: propagates
        list(read_ahead([1], lambda x: (_ for _ in ()).throw(RuntimeError("boom")), workers=1, depth=1))


@pytest.mark.parametrize("cpus, omp, given, expected", [
    (2, None, (None, None), (1, 1)),     # one thread reads ahead, one runs the model
    (16, None, (None, None), (2, 14)),
    (2, "1", (None, None), (1, None)),   # OMP_NUM_THREADS (torchrun sets it) is respected
    (2, None, (0, 3), (0, 3)),           # explicit --workers / --threads win
])
def test_reading_and_model_threads_share_the_cpus(monkeypatch, cpus, omp, given, expected):
    from types import SimpleNamespace

    import torch

    from msgf.commands import infer

    monkeypatch.setattr(infer.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    args = SimpleNamespace(workers=given[0], threads=given[1])
    infer._share_cpus(args)
    assert (args.workers, args.threads) == expected
    assert calls == ([] if expected[1] is None else [expected[1]])

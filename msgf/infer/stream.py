"""Reading ahead of the model: inputs are opened (and their glances read) on worker threads.

Decoding a JPEG/PNG (Pillow) and reading a TIFF's tiles (tifffile's codecs, zarr) release the
GIL, so threads overlap them with the model's forward passes, which also run outside it. At
most `depth` inputs are in flight, so memory stays bounded by `depth` decoded images whatever
the length of the stream. Focus regions stay lazy: they are read once pi has chosen them.
"""
from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class GlanceReadAhead:
    """A region reader whose glance was read when it was opened (on a worker thread); regions
    are still read on demand. A reader holding decoded pixels (`.array`) needs no glance read:
    `predict` resizes those pixels itself."""

    def __init__(self, reader, glance_size: int):
        self.reader, self.path, self.shape = reader, getattr(reader, "path", None), reader.shape
        self.array = getattr(reader, "array", None)
        self._glance = None
        if not isinstance(self.array, np.ndarray):
            self._glance = ((glance_size, glance_size), reader.read_glance(glance_size, glance_size))

    def read_glance(self, h: int, w: int) -> np.ndarray:
        if self._glance is not None and self._glance[0] == (h, w):
            return self._glance[1]
        return self.reader.read_glance(h, w)

    def read_region(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self.reader.read_region(y, x, h, w)

    def close(self) -> None:
        self._glance = None
        self.reader.close()


def read_ahead(items: Iterable, open_item: Callable, *, workers: int, depth: int,
               errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> Iterator[tuple]:
    """(item, open_item(item)) in input order, opened on `workers` threads at most `depth` items
    ahead of the consumer. An exception among `errors` is yielded in place of the opened value
    (the caller reports it and goes on); any other propagates. workers=0 opens in this thread."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers: expected a non-negative integer, got {workers!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth: expected a positive integer, got {depth!r}")

    def attempt(item):
        try:
            return open_item(item)
        except errors as error:
            return error

    if workers == 0:
        for item in items:
            yield item, attempt(item)
        return
    stream = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msgf-read") as pool:
        pending = collections.deque((item, pool.submit(attempt, item)) for item in itertools.islice(stream, depth))
        try:
            while pending:
                item, future = pending.popleft()
                for following in itertools.islice(stream, 1):
                    pending.append((following, pool.submit(attempt, following)))
                yield item, future.result()
        finally:  # the consumer stopped early: close what was opened for nothing
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True)
            for _, future in pending:
                if not future.cancelled() and future.exception() is None and hasattr(future.result(), "close"):
                    future.result().close()

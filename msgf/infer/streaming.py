"""Streams of inputs for any predictor with `predict_regions(readers)` and a `config` with a
glance size: opened on worker threads ahead of the model, a failing batch retried one input at
a time. Shared by the PyTorch `Predictor` and `msgf.deploy.OnnxPredictor`; imports no torch."""
from __future__ import annotations

import itertools
import os


class RegionStreaming:
    """Mixin: `predict_stream` and `predict_stream_readers` over `self.predict_regions`."""

    def predict_stream(self, inputs, *, batch_size: int = 32, workers: int = 2, depth: int | None = None):
        """(input, ImagePrediction or the error) for each of `inputs` (paths, or region readers), in
        input order, as a generator over a stream of any length. Paths are opened (JPEG/PNG
        decoded, a TIFF's glance read) on `workers` threads while the model runs, at most `depth`
        (default one batch) ahead, so memory stays bounded; focus regions are read when chosen.
        A file that cannot be read, or a batch that fails, costs only the results of its own
        inputs: each comes back as the exception (ValueError or OSError) instead of a result."""
        for item, reader, result in self.predict_stream_readers(inputs, batch_size=batch_size, workers=workers,
                                                                 depth=depth):
            if reader is not None and reader is not item:
                reader.close()
            yield item, result

    def predict_stream_readers(self, inputs, *, batch_size: int = 32, workers: int = 2, depth: int | None = None):
        """As predict_stream, with each input's opened reader (None where it could not be opened):
        (input, reader, result or error). The caller closes the readers it did not pass in."""
        from msgf.data.regions import open_image
        from msgf.infer.stream import GlanceReadAhead, read_ahead

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        glance = self.config.glance_size

        def open_input(item):
            if hasattr(item, "read_region"):
                return item
            return GlanceReadAhead(open_image(os.fspath(getattr(item, "path", item))), glance)

        # one batch ahead keeps the reading threads busy while the model runs a batch; each
        # decoded 960x1280 image held ahead is 3.7 MB more at the peak
        opened = read_ahead(inputs, open_input, workers=workers, depth=depth or batch_size)
        while True:
            batch = list(itertools.islice(opened, batch_size))
            if not batch:
                return
            results = iter(self._predict_each([reader for _, reader in batch if not isinstance(reader, Exception)]))
            for item, reader in batch:
                if isinstance(reader, Exception):
                    yield item, None, reader
                else:
                    yield item, reader, next(results)

    def _predict_each(self, readers) -> list:
        """predict_regions, with a failing batch retried one reader at a time so that one bad
        file (a corrupt tile, an image smaller than a patch) costs only its own result."""
        if not readers:
            return []
        try:
            return self.predict_regions(readers)
        except (ValueError, OSError) as error:
            if len(readers) == 1:
                return [error]
        return [result for reader in readers for result in self._predict_each([reader])]

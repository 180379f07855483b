"""Score one mini-batch of files: decode in threads while the model runs, one forward per batch.

Every file of the mini-batch comes back as exactly one row: scored, or an error
with its reason. Nothing is dropped, so the job can account for every input.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from scoring.constants import DEFAULT_MAX_PIXELS
from scoring.images import ImageDecodeError, Preprocessor, decode_image
from scoring.items import image_id
from scoring.predict import Predictor
from scoring.rows import error_row, scored_row

log = logging.getLogger(__name__)


class MiniBatchScorer:
    """Built once per worker by `init()`; `score()` is what `run()` calls."""

    def __init__(
        self,
        *,
        model_dir: Path,
        month: str,
        input_root: str | None = None,
        batch_size: int = 32,
        decode_threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
    ):
        self.predictor = Predictor(model_dir, device, precision=precision, channels_last=channels_last,
                                   compile=compile)
        self.metadata = self.predictor.metadata
        self.preprocess = Preprocessor(self.metadata.preprocessing)
        self.month = month
        self.input_root = input_root
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        # decode_threads=0 decodes inline: best where every core already runs a worker process.
        threads = min(4, os.cpu_count() or 1) if decode_threads is None else decode_threads
        self._decoder = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None
        log.info(
            "model %s version %s (%s, %d labels) on %s, %s%s, batches of %d",
            self.metadata.name, self.metadata.version, self.metadata.architecture, len(self.metadata.labels),
            self.predictor.device, precision, ", channels_last" if channels_last else "", batch_size,
        )

    def score(self, files: Sequence[str]) -> list[str]:
        rows: list[str] = []
        pending_ids: list[str] = []
        pending_tensors = []
        for path, outcome in zip(files, self._decoded(files)):
            item = image_id(path, self.input_root)
            if isinstance(outcome, ImageDecodeError):
                rows.append(error_row(item, outcome.error_type, outcome.message))
                continue
            pending_ids.append(item)
            pending_tensors.append(outcome)
            if len(pending_ids) == self.batch_size:
                rows.extend(self._forward(pending_ids, pending_tensors))
                pending_ids, pending_tensors = [], []
        if pending_ids:
            rows.extend(self._forward(pending_ids, pending_tensors))
        return rows

    def _decoded(self, files: Sequence[str]) -> Iterator:
        # map() keeps input order and decodes ahead while the caller runs forwards.
        if self._decoder is None:
            return map(self._decode_one, files)
        return self._decoder.map(self._decode_one, files)

    def _decode_one(self, path: str):
        try:
            image: Image.Image = decode_image(path, max_pixels=self.max_pixels,
                                              min_side=self.metadata.preprocessing.resize)
            return self.preprocess.crop(image)
        except ImageDecodeError as error:
            return error

    def _forward(self, ids: list[str], tensors: list) -> list[str]:
        # uint8 crosses to the device (a quarter of float32's bytes); normalising happens there.
        pixels = torch.stack(tensors).to(self.predictor.device, non_blocking=True)
        labels, scores = self.predictor.predict(self.preprocess.normalize(pixels))
        return [
            scored_row(
                item, label, score,
                model_name=self.metadata.name, model_version=self.metadata.version, month=self.month,
            )
            for item, label, score in zip(ids, labels, scores)
        ]

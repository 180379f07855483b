"""Score one mini-batch of files: decode in threads while the model runs, one forward per batch.

Every file of the mini-batch comes back as exactly one row: scored, or an error
with its reason. Nothing is dropped, so the job can account for every input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from scoring.images import ImageDecodeError, Preprocessor, decode_image
from scoring.items import image_id
from scoring.job_settings import JobSettings
from scoring.model_metadata import read_metadata
from scoring.predict import Predictor, fit_batch_size
from scoring.profile import FIT_GPU, Capabilities, probe, resolve
from scoring.rows import error_row, scored_row

log = logging.getLogger(__name__)


class MiniBatchScorer:
    """Built once per worker by `init()`; `score()` is what `run()` calls.

    :param settings: the job's settings; their scoring profile is resolved against this node.
    :param capabilities: the node's (default: probed here).
    """

    def __init__(self, *, model_dir: Path, month: str, input_root: str | None = None,
                 settings: JobSettings | None = None, capabilities: Capabilities | None = None):
        settings = settings or JobSettings()
        metadata = read_metadata(Path(model_dir))
        self.profile = resolve(settings, capabilities or probe(), metadata.precision_agreement)
        self.predictor = Predictor(model_dir, self.profile.device, precision=self.profile.precision,
                                   channels_last=self.profile.channels_last, compile=self.profile.compile)
        self.metadata = self.predictor.metadata
        self.preprocess = Preprocessor(self.metadata.preprocessing)
        self.month = month
        self.input_root = input_root
        self.max_pixels = settings.max_pixels
        self.batch_size = self.profile.batch_size
        if self.batch_size == FIT_GPU:
            self.batch_size = fit_batch_size(self.predictor, self.metadata.preprocessing.crop)
        threads = self.profile.decode_threads
        self._decoder = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None
        log.info("model %s version %s (%s, %d labels); scoring profile: %s; batch %d",
                 self.metadata.name, self.metadata.version, self.metadata.architecture, len(self.metadata.labels),
                 self.profile.describe(), self.batch_size)  # with the reason for every automatic choice

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
        pre = self.metadata.preprocessing
        try:
            image = decode_image(path, max_pixels=self.max_pixels, min_side=pre.resize)
            return self.preprocess.crop(image)
        except ImageDecodeError as error:
            return error
        except Exception as error:  # noqa: BLE001 - one bad file costs one row, whatever it raises
            return ImageDecodeError.unexpected(error)

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

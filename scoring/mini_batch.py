"""Score one mini-batch of files: decode in threads while the model runs, one forward per batch.

Every file of the mini-batch comes back as exactly one row: scored, or an error
with its reason. Nothing is dropped, so the job can account for every input.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from scoring.image_decode import ImageDecodeError, Preprocessor, decode_image
from scoring.items import PathOutsideInput, image_id, is_input
from scoring.job_settings import JobSettings
from scoring.model import ModelFolderError, load_model
from scoring.predict import Predictor, fit_batch_size, pick_device, predictions
from scoring.device_profile import FIT_GPU, Capabilities, probe, resolve
from scoring.rows import ErrorType, error_row, scored_row

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What every scored row of the job carries besides its prediction: the registered model and the month."""

    model_name: str
    model_version: str
    month: str


class MiniBatchScorer:
    """Built once per worker by `init()`; `score()` is what `run()` calls.

    :param stamp: the registered model's name and version and the month, written into every row.
    :param settings: the job's settings; their scoring profile is resolved against this node.
    :param capabilities: the node's (default: probed here).
    """

    def __init__(self, *, model_dir: Path, stamp: Stamp, input_root: str | None = None,
                 settings: JobSettings | None = None, capabilities: Capabilities | None = None):
        settings = settings or JobSettings()
        capabilities = capabilities or probe()
        from scoring.model_format import locate

        agreement = locate(Path(model_dir)).metadata.precision_agreement
        self.profile = resolve(settings, capabilities, agreement)
        torch.set_num_threads(self.profile.torch_threads)
        loaded = load_model(Path(model_dir), pick_device(self.profile.device))
        self.predictor = Predictor(loaded, self.profile.device, precision=self.profile.precision,
                                   channels_last=self.profile.channels_last, compile=self.profile.compile)
        self.metadata = loaded.metadata
        if settings.top_k > len(self.metadata.labels):
            raise ModelFolderError(f"top_k={settings.top_k} but the model has {len(self.metadata.labels)} classes")
        self.digest = loaded.digest
        self.top_k, self.all_scores = settings.top_k, settings.all_scores
        self.preprocess = Preprocessor(self.metadata.preprocessing)
        self.stamp = stamp
        self.input_root = input_root
        self._sample_logged = False
        self.max_pixels = settings.max_pixels
        self.batch_size = self.profile.batch_size
        if loaded.fixed_batch:
            self.batch_size = loaded.fixed_batch  # what the program runs at; a smaller last batch is padded
        elif self.batch_size == FIT_GPU:
            self.batch_size = fit_batch_size(self.predictor, self.metadata.preprocessing.side)
        threads = self.profile.decode_threads
        self._decoder = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None
        log.info("model %s:%s: %s; sha256 %s", stamp.model_name, stamp.model_version, loaded.describe(),
                 self.digest[:12])
        if loaded.fixed_batch:
            log.info("the program was exported with a fixed batch of %d: batches run at that size (padded); "
                     "export it with torch.export.Dim('batch') for any size", loaded.fixed_batch)
        log.info("scoring profile: %s; batch %d; %d torch threads (%d cores, %d workers)", self.profile.describe(),
                 self.batch_size, self.profile.torch_threads, capabilities.cpus,
                 settings.max_concurrency_per_instance or capabilities.cpus)  # with the reasons

    def score(self, files: Sequence[str]) -> list[str]:
        rows: list[str] = []
        pending_ids: list[str] = []
        pending_tensors = []
        placed = self._place(files)
        for (_path, item), outcome in zip(placed, self._decoded([path for path, _item in placed])):
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

    def _place(self, files: Sequence[str]) -> list[tuple[str, str]]:
        """(path, item name) of the files to score. The month's completeness marker gets no row (Azure ML hands
        every file of the folder); a path placed nowhere gets none either, and the merge lists its item."""
        placed = []
        for path in files:
            try:
                item = image_id(path, self.input_root)
            except PathOutsideInput as error:
                log.error("%s", error)
                continue
            if not self._sample_logged:  # one per worker: how the service's paths map to item names
                log.info("mini-batch paths look like %r, item %r (input root %r)", path, item, str(self.input_root))
                self._sample_logged = True
            if is_input(item):
                placed.append((path, item))
        return placed

    def _decoded(self, files: Sequence[str]) -> Iterator:
        # map() keeps input order and decodes ahead while the caller runs forwards.
        if self._decoder is None:
            return map(self._decode_one, files)
        return self._decoder.map(self._decode_one, files)

    def _decode_one(self, path: str):
        try:
            image = decode_image(path, max_pixels=self.max_pixels, min_side=self.metadata.preprocessing.short_side)
            return self.preprocess.crop(image)
        except ImageDecodeError as error:
            return error
        except Exception as error:  # noqa: BLE001 - one bad file costs one row, whatever it raises
            return ImageDecodeError.unexpected(error)

    def _forward(self, ids: list[str], tensors: list) -> list[str]:
        # uint8 crosses to the device (a quarter of float32's bytes); normalising happens there.
        pixels = torch.stack(tensors).to(self.predictor.device, non_blocking=True)
        found = predictions(self.predictor.probabilities(self.preprocess.normalize(pixels)), self.metadata.labels,
                            top_k=self.top_k, all_scores=self.all_scores, multi_label=self.metadata.multi_label,
                            threshold=self.metadata.threshold)
        rows = []
        for item, fields in zip(ids, found):
            if fields is None:
                rows.append(error_row(item, ErrorType.BAD_OUTPUT, "the model's output for this image is not a "
                                      "finite probability (nan or inf); check the model and its preprocessing"))
                continue
            label, score = fields.pop("label"), fields.pop("score")
            rows.append(scored_row(item, label, score, model_name=self.stamp.model_name,
                                   model_version=self.stamp.model_version, month=self.stamp.month, extra=fields,
                                   model_digest=self.digest))
        return rows

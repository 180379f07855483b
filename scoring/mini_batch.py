"""Score one mini-batch of files: decode ahead while the model runs (scoring.decoders), one forward per batch.

Every file of the mini-batch comes back as exactly one row: scored, or an error
with its reason. Nothing is dropped, so the job can account for every input.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from scoring.decoders import PillowDecoding, choose, make_decoding, measure_rates
from scoring.image_decode import ImageDecodeError, Preprocessor
from scoring.items import PathOutsideInput, image_id, is_input
from scoring.job_settings import JobSettings
from scoring.model import ModelFolderError, load_model
from scoring.predict import Predictor, fit_batch_size, pick_device, predictions
from scoring.device_profile import FIT_GPU, Capabilities, probe, resolve
from scoring.rows import ErrorType, error_row, scored_row
from scoring.step_times import StepTimes

log = logging.getLogger(__name__)
# The share of the free GPU memory the workers of a node fit their batches into, together.
GPU_MEMORY_SHARE = 0.5


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
        # Where a worker's start-up goes, as data: the job log's `init:` line, and bench.worker_startup's.
        self.init_steps = StepTimes()
        capabilities = capabilities or probe()
        self.init_steps.step("capabilities")
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
        self.batch_size = self.profile.batch_size
        self.init_steps.step("model")
        workers = self.profile.workers
        if loaded.fixed_batch:
            self.batch_size = loaded.fixed_batch  # what the program runs at; a smaller last batch is padded
        elif self.batch_size == FIT_GPU:
            # Every worker of the node shares the GPU; a batch never outgrows the mini-batch it is cut from.
            self.batch_size = fit_batch_size(self.predictor, self.metadata.preprocessing.side,
                                             memory_fraction=GPU_MEMORY_SHARE / workers,
                                             largest=settings.mini_batch_size)
        self.init_steps.step("batch_fit")
        pillow = PillowDecoding(self.preprocess, max_pixels=settings.max_pixels,
                                min_side=self.metadata.preprocessing.short_side, threads=self.profile.decode_threads)
        decoder, why = choose(self.profile.decoder, self.profile.device, lambda: measure_rates(
            pillow, self.predictor.device, threads=self.profile.decode_threads, workers=workers,
            input_root=input_root))
        self.profile = dataclasses.replace(self.profile, decoder=decoder, reasons=(*self.profile.reasons, why))
        self.decoding = make_decoding(decoder, pillow, self.predictor.device, chunk=self.batch_size)
        self._fallbacks_logged = False
        self.init_steps.step("decoder")
        log.info("model %s:%s: %s; sha256 %s", stamp.model_name, stamp.model_version, loaded.describe(),
                 self.digest[:12])
        if loaded.fixed_batch:
            log.info("the program was exported with a fixed batch of %d: batches run at that size (padded); "
                     "export it with torch.export.Dim('batch') for any size", loaded.fixed_batch)
        log.info("scoring profile: %s; batch %d; %d torch threads (%d cores, %d workers)", self.profile.describe(),
                 self.batch_size, self.profile.torch_threads, capabilities.cpus,
                 workers)  # with the reasons
        log.info("decoder: %s (%s)", self.decoding.describe(), why)
        log.info("init: %s", self.init_steps.describe())

    def score(self, files: Sequence[str]) -> list[str]:
        rows: list[str] = []
        pending_ids: list[str] = []
        pending_tensors = []
        placed = self._place(files)
        # In input order, decoded ahead while the forwards run.
        for (_path, item), outcome in zip(placed, self.decoding.outcomes([path for path, _item in placed])):
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
        self._log_fallbacks()
        return rows

    def _log_fallbacks(self) -> None:
        """Once per worker at INFO (then at DEBUG): which files the batched decoder left to Pillow, and why."""
        decoder = getattr(self.decoding, "decoder", None)
        if decoder is None or not decoder.fallbacks:
            return
        log.log(logging.DEBUG if self._fallbacks_logged else logging.INFO, "decoding so far: %s", decoder.summary())
        self._fallbacks_logged = True

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

    def _forward(self, ids: list[str], tensors: list) -> list[str]:
        # uint8 crosses to the device (a quarter of float32's bytes); normalising happens there.
        if self.profile.pin_memory and tensors[0].device.type == "cpu":
            staged = torch.empty((len(tensors), *tensors[0].shape), dtype=torch.uint8, pin_memory=True)
            pixels = torch.stack(tensors, out=staged)
        else:
            pixels = torch.stack(tensors)
        pixels = pixels.to(self.predictor.device, non_blocking=True)
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

"""Batched top-1 prediction: one forward per batch, on the best device present, in the precision asked for."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from scoring.model import load_model_folder

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32", *_AUTOCAST_DTYPES)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Holds a model in eval mode on one device and scores batches of preprocessed tensors.

    :param precision: `fp32`, or autocast to `bf16` / `fp16` (fp16 only on CUDA).
    :param channels_last: NHWC memory layout, faster for convolutions on CPUs and tensor cores.
    :param compile: `torch.compile` the model; pays only on long runs (README "Performance").
    """

    def __init__(self, model_dir: Path, device: str | None = None, *, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} must be one of {', '.join(PRECISIONS)}")
        self.device = pick_device(device)
        self.precision = precision
        self.channels_last = channels_last
        self.model, self.metadata = load_model_folder(model_dir, self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def predict(self, batch: torch.Tensor) -> tuple[list[str], list[float]]:
        """Top-1 label and probability for every row of `batch` (N, 3, H, W)."""
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            logits = self.model(batch)
        probabilities = torch.softmax(logits.float(), dim=1)
        scores, indices = probabilities.max(dim=1)
        labels = self.metadata.labels
        return [labels[i] for i in indices.cpu().tolist()], scores.cpu().tolist()


def fit_batch_size(predictor: Predictor, crop: int, *, memory_fraction: float = 0.5, smallest: int = 32,
                   largest: int = 1024) -> int:
    """The largest power-of-two batch whose forward fits `memory_fraction` of the free GPU memory.

    Measured, not guessed: one forward of a small batch gives the memory one image costs with this
    model, precision and layout.
    """
    probe = 8
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(predictor.device)
    before = torch.cuda.memory_allocated(predictor.device)
    predictor.predict(torch.zeros(probe, 3, crop, crop))
    per_image = max(1.0, (torch.cuda.max_memory_allocated(predictor.device) - before) / probe)
    free, _total = torch.cuda.mem_get_info(predictor.device)
    batch = smallest
    while batch * 2 <= largest and batch * 2 * per_image <= free * memory_fraction:
        batch *= 2
    return batch

"""Batched prediction: one forward per batch, in the precision asked for, and what the outputs say per image.

`Predictor` holds a loaded model (`scoring.model`) on one device and turns a
batch of normalised images into class probabilities: softmax over the classes,
a sigmoid per class for a multi-label model, or the model's own probabilities.
A program exported with a fixed batch runs at that size (the batch is padded,
the padding dropped). `predictions()` turns probabilities into each image's
fields: top-1 label and score, the next `top_k - 1`, the labels at or above a
multi-label threshold, every class's score; an image whose outputs are not
finite gets None (its row is an error, never a published `nan`).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch

from scoring.model import LoadedModel, load_model

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32", *_AUTOCAST_DTYPES)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """A model in eval mode on one device, scoring batches of preprocessed tensors.

    :param model: a model path (file or folder), or a model already loaded.
    :param precision: `fp32`, or autocast to `bf16` / `fp16` (fp16 only on CUDA).
    :param channels_last: NHWC memory layout, faster for convolutions on CPUs and tensor cores.
    :param compile: `torch.compile` the model; pays only on long runs (docs, performance).
    """

    def __init__(self, model: Path | LoadedModel, device: str | None = None, *, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} must be one of {', '.join(PRECISIONS)}")
        self.device = pick_device(device)
        self.precision = precision
        self.channels_last = channels_last
        self.loaded = model if isinstance(model, LoadedModel) else load_model(Path(model), self.device)
        self.metadata = self.loaded.metadata
        self.model = self.loaded.module.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) float32 probabilities on the CPU for a batch (N, 3, H, W)."""
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        fixed, count = self.loaded.fixed_batch, batch.shape[0]
        chunks = [batch] if not fixed else [_padded(batch[start:start + fixed], fixed)
                                            for start in range(0, count, fixed)]
        with torch.inference_mode(), self._autocast():
            logits = torch.cat([self.model(chunk) for chunk in chunks])[:count].float()
        activation = self.metadata.activation
        if activation == "softmax":
            logits = torch.softmax(logits, dim=1)
        elif activation == "sigmoid":
            logits = torch.sigmoid(logits)
        return logits.cpu()

    def top1(self, batch: torch.Tensor) -> tuple[list[str], list[float]]:
        """Top-1 label and probability for every image of `batch`."""
        scores, indices = self.probabilities(batch).max(dim=1)
        labels = self.metadata.labels
        return [labels[i] for i in indices.tolist()], scores.tolist()


def _padded(chunk: torch.Tensor, size: int) -> torch.Tensor:
    """A chunk filled up to the program's fixed batch with blank images, whose outputs are dropped."""
    if chunk.shape[0] == size:
        return chunk
    return torch.cat([chunk, chunk.new_zeros((size - chunk.shape[0], *chunk.shape[1:]))])


def predictions(probabilities: torch.Tensor, labels: tuple[str, ...], *, top_k: int = 1, all_scores: bool = False,
                multi_label: bool = False, threshold: float = 0.5) -> list[dict | None]:
    """Each image's prediction fields (docs/contracts.md, predictions.csv), or None where the outputs are not
    finite or not probabilities."""
    k = min(top_k, len(labels))
    scores, indices = probabilities.topk(k, dim=1)
    valid = torch.isfinite(probabilities).all(dim=1) & (probabilities >= 0).all(dim=1) & \
        (probabilities <= 1.0 + 1e-6).all(dim=1)
    found: list[dict | None] = []
    for row, (row_scores, row_indices, ok) in enumerate(zip(scores.tolist(), indices.tolist(), valid.tolist())):
        if not ok:
            found.append(None)
            continue
        fields = {"label": labels[row_indices[0]], "score": _score(row_scores[0])}
        for rank in range(1, k):
            fields[f"label_{rank + 1}"] = labels[row_indices[rank]]
            fields[f"score_{rank + 1}"] = _score(row_scores[rank])
        if multi_label:
            chosen = (probabilities[row] >= threshold).nonzero().flatten().tolist()
            fields["labels"] = json.dumps([labels[i] for i in chosen], ensure_ascii=False)
        if all_scores:
            fields["scores"] = json.dumps({label: _score(value) for label, value in
                                           zip(labels, probabilities[row].tolist())}, ensure_ascii=False)
        found.append(fields)
    return found


def _score(value: float) -> float:
    return round(min(max(float(value), 0.0), 1.0), 6) if math.isfinite(value) else value


def fit_batch_size(predictor: Predictor, side: int, *, memory_fraction: float = 0.5, smallest: int = 32,
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
    predictor.probabilities(torch.zeros(probe, 3, side, side))
    per_image = max(1.0, (torch.cuda.max_memory_allocated(predictor.device) - before) / probe)
    free, _total = torch.cuda.mem_get_info(predictor.device)
    batch = min(smallest, largest)
    while batch * 2 <= largest and batch * 2 * per_image <= free * memory_fraction:
        batch *= 2
    return batch

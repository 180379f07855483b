"""How often a reduced precision picks the same top-1 class as fp32: the guard on `precision=auto`.

`python -m scoring check-precision --model <folder> --input <folder of images>`
scores the images in fp32 and in each reduced precision and records the top-1
agreement in the model's `metadata.json` (`precision_agreement`). A job with
`precision=auto` uses a reduced precision only where this record says it agrees
with fp32 on at least 99.5% of images (`scoring.device_profile.MIN_AGREEMENT`). Run it
before registering a model version; on a machine without a GPU, fp16 is
measured with the CPU's fp16 autocast (same rounding of weights and activations,
other kernels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from scoring.image_decode import ImageDecodeError, Preprocessor, decode_image
from scoring.model import load_model
from scoring.model_format import locate
from scoring.model_metadata import write_metadata
from scoring.predict import Predictor

REDUCED_PRECISIONS = ("bf16", "fp16")


def top1_agreement(model_dir: Path, files: Iterable[str | Path], *, device: str = "cpu",
                   precisions: Sequence[str] = REDUCED_PRECISIONS, batch_size: int = 32) -> dict[str, float]:
    """{precision: share of decodable images whose top-1 label equals fp32's}; each image decoded once."""
    metadata = load_model(Path(model_dir)).metadata  # the input size a program states is known once loaded
    preprocess = Preprocessor(metadata.preprocessing)
    crops = []
    for path in files:
        try:
            crops.append(preprocess.crop(decode_image(path, min_side=metadata.preprocessing.short_side)))
        except ImageDecodeError:
            continue  # broken files say nothing about precision
    if not crops:
        raise ValueError("no decodable image to compare precisions on")

    def labels(precision: str, channels_last: bool) -> list[str]:
        predictor = Predictor(Path(model_dir), device, precision=precision, channels_last=channels_last)
        found: list[str] = []
        for start in range(0, len(crops), batch_size):
            batch = torch.stack(crops[start:start + batch_size]).to(predictor.device)
            found += predictor.top1(preprocess.normalize(batch))[0]
        return found

    reference = labels("fp32", channels_last=False)
    return {precision: sum(a == b for a, b in zip(reference, labels(precision, channels_last=True))) / len(reference)
            for precision in precisions}


def record_agreement(model_dir: Path, files: Iterable[str | Path], *, device: str = "cpu") -> dict[str, float]:
    """Measure and write `precision_agreement` into the model folder's metadata; returns the new record."""
    measured = top1_agreement(model_dir, list(files), device=device)
    metadata = locate(Path(model_dir)).metadata  # as written, not as loaded: no labels or sizes filled in
    record = {**metadata.precision_agreement, **{k: round(v, 4) for k, v in measured.items()}}
    write_metadata(Path(model_dir), dataclasses.replace(metadata, precision_agreement=record))
    return record

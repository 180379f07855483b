"""Batched top-1 prediction: one forward per batch, on the best device present."""

from __future__ import annotations

from pathlib import Path

import torch

from scoring.model import load_model_folder


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Holds a model in eval mode on one device and scores batches of preprocessed tensors."""

    def __init__(self, model_dir: Path, device: str | None = None):
        self.device = pick_device(device)
        self.model, self.metadata = load_model_folder(model_dir, self.device)

    def predict(self, batch: torch.Tensor) -> tuple[list[str], list[float]]:
        """Top-1 label and probability for every row of `batch` (N, 3, H, W)."""
        with torch.inference_mode():
            logits = self.model(batch.to(self.device, non_blocking=True))
            probabilities = torch.softmax(logits.float(), dim=1)
            scores, indices = probabilities.max(dim=1)
        labels = self.metadata.labels
        return [labels[i] for i in indices.cpu().tolist()], scores.cpu().tolist()

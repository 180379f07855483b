"""The registered model folder: safe weights plus the metadata needed to use them (`scoring.model_metadata`).

A model folder holds `weights.pt` (a plain state dict, loaded with
`weights_only=True` so no pickled code ever runs) and `metadata.json` naming the
torchvision architecture, the class labels and the preprocessing constants, and
optionally the top-1 agreement with fp32 measured for reduced precisions
(`precision_agreement`, written by `python -m scoring check-precision`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torchvision

from scoring.model_metadata import (  # noqa: F401 - the folder's public names, re-exported
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelFolderError,
    ModelMetadata,
    Preprocessing,
    read_metadata,
    write_metadata,
)


def build_model(architecture: str, num_classes: int) -> torch.nn.Module:
    """An untrained torchvision classifier; weights never come from a hub."""
    try:
        return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)
    except ValueError as error:
        raise ModelFolderError(f"unknown torchvision architecture {architecture!r}: {error}") from None


def save_model_folder(folder: Path, model: torch.nn.Module, metadata: ModelMetadata) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    # Metadata last: a folder with metadata is a complete folder.
    write_metadata(folder, metadata)


def load_model_folder(folder: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ModelMetadata]:
    """Load the model in eval mode on `device`; refuses weights that would execute pickled code."""
    folder = Path(folder)
    metadata = read_metadata(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFolderError(f"model folder {folder} has no {WEIGHTS_FILE}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFolderError(
            f"refusing {weights}: it is not a plain state dict and loading it would execute pickled code ({first_line})"
        ) from None
    model = build_model(metadata.architecture, len(metadata.labels))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFolderError(f"{weights} does not fit architecture {metadata.architecture!r}: {first_line}") from None
    model.eval()
    return model.to(device), metadata

"""The registered model folder: safe weights plus the metadata needed to use them.

A model folder holds `weights.pt` (a plain state dict, loaded with
`weights_only=True` so no pickled code ever runs) and `metadata.json` naming the
torchvision architecture, the class labels and the preprocessing constants.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import torch
import torchvision

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"


class ModelFolderError(RuntimeError):
    """The model folder is missing, incomplete or unsafe; the message says which and where."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str
    architecture: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelMetadata:
        pre = values["preprocessing"]
        return cls(
            name=str(values["name"]),
            version=str(values["version"]),
            architecture=str(values["architecture"]),
            labels=tuple(str(label) for label in values["labels"]),
            preprocessing=Preprocessing(
                resize=int(pre["resize"]),
                crop=int(pre["crop"]),
                mean=tuple(float(x) for x in pre["mean"]),
                std=tuple(float(x) for x in pre["std"]),
            ),
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
    (folder / METADATA_FILE).write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_metadata(folder: Path) -> ModelMetadata:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise ModelFolderError(f"model folder {folder} has no {METADATA_FILE}: is it a registered model folder?")
    try:
        return ModelMetadata.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFolderError(f"{path} is not valid model metadata: {error!r}") from None


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

"""A registered model folder's metadata: what the model is and how to feed it; no torch here.

A model folder (docs/contracts.md) holds `weights.pt` (a plain state dict, loaded with
`weights_only=True` so no pickled code ever runs) and `metadata.json` naming the
torchvision architecture, the class labels and the preprocessing constants, and
optionally the top-1 agreement with fp32 measured for reduced precisions
(`precision_agreement`, written by `python -m scoring check-precision`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any


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
    # {"bf16": 0.9967, ...}: top-1 agreement with fp32; `auto` picks a reduced precision only from here.
    precision_agreement: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        pre = self.preprocessing
        if pre.resize < 1 or pre.crop < 1:
            raise ValueError(f"preprocessing resize={pre.resize} and crop={pre.crop} must both be >= 1")
        if pre.crop > pre.resize:
            raise ValueError(f"preprocessing crop={pre.crop} is larger than resize={pre.resize}")
        if not self.labels:
            raise ValueError("labels is empty: the model must name its classes")
        duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"labels are not unique: {', '.join(map(repr, duplicates))}")
        if any(not 0.0 <= value <= 1.0 for value in self.precision_agreement.values()):
            raise ValueError(f"precision_agreement values must lie in [0, 1]: {self.precision_agreement}")

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
            precision_agreement={str(k): float(v) for k, v in values.get("precision_agreement", {}).items()},
        )


def write_metadata(folder: Path, metadata: ModelMetadata) -> None:
    """Replace `metadata.json` whole (temporary file, then rename): a reader never sees half of it."""
    partial = Path(folder) / f".{METADATA_FILE}.partial"
    partial.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(partial, Path(folder) / METADATA_FILE)


def read_metadata(folder: Path) -> ModelMetadata:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise ModelFolderError(f"model folder {folder} has no {METADATA_FILE}: is it a registered model folder?")
    try:
        return ModelMetadata.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except KeyError as error:
        raise ModelFolderError(f"{path} is not valid model metadata: it lacks the field {error}") from None
    except (TypeError, ValueError) as error:
        raise ModelFolderError(f"{path} is not valid model metadata: {error}") from None

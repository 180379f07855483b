"""A model's `metadata.json`: what the model's outputs mean and how to feed it; no torch here.

Every field is optional but the architecture of a state dict (docs/contracts.md, "The model"):
- `name`, `version`: what the model calls itself (the registry's name and version win in the rows);
- `format` and `file`: which file of the folder is the model and how it is stored (detected when absent);
- `architecture`: the torchvision architecture a state dict is loaded into;
- `labels`: class names in output order (absent: the class indices `0`, `1`, …);
- `multi_label` and `threshold`: a sigmoid per class, classes at or above the threshold predicted;
- `outputs`: `logits` (softmax or sigmoid applied here) or `probabilities` (the model applies its own);
- `preprocessing`: `resize_mode` (`crop`: shorter side to `resize`, then the centre `input_size` square;
  `stretch`: the whole image to `input_size` square), `input_size`, `resize`, `interpolation`, `mean`, `std`
  (ImageNet's by default);
- `precision_agreement`: top-1 agreement with fp32 measured per reduced precision (`check-precision`).

Values are read as they are typed: `"64"`, `64.9` or `true` where an integer is expected are refused, as are
non-finite numbers, a `std` of 0 and sizes outside `SIDE_RANGE`, each in one line naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from scoring.atomic_write import atomic_write

METADATA_FILE = "metadata.json"
STATE_DICT, TORCH_EXPORT, TORCHSCRIPT = "state_dict", "torch_export", "torchscript"
FORMATS = (TORCH_EXPORT, TORCHSCRIPT, STATE_DICT)
RESIZE_MODES = ("crop", "stretch")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
OUTPUTS = ("logits", "probabilities")
SIDE_RANGE = (1, 4096)  # pixels, for input_size and resize
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224
DEFAULT_THRESHOLD = 0.5


class ModelFolderError(RuntimeError):
    """The model is missing, incomplete, unsafe or described wrongly; the message says which and where."""


class MetadataError(ValueError):
    """One field of the metadata is wrong; the message names it."""


def default_resize(input_size: int) -> int:
    """ImageNet's ratio (256 for 224): the shorter side before the centre crop."""
    return max(input_size, round(input_size * 256 / 224))


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    input_size: int | None = None  # the model's square input side (None: the program's own, else 224)
    resize: int | None = None  # crop mode: the shorter side before cropping (None: ImageNet's ratio)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_mode: str = "crop"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.input_size is not None:
            _side("preprocessing.input_size", self.input_size)
        if self.resize is not None:
            _side("preprocessing.resize", self.resize)
        _choice("preprocessing.resize_mode", self.resize_mode, RESIZE_MODES)
        _choice("preprocessing.interpolation", self.interpolation, INTERPOLATIONS)
        if self.resize_mode == "crop" and self.short_side < self.side:
            raise MetadataError(f"preprocessing.input_size={self.side} is larger than resize={self.short_side}: "
                                "the centre crop must fit in the resized image")
        _triple("preprocessing.mean", self.mean, low=0.0, high=1.0)
        _triple("preprocessing.std", self.std, low=0.0, high=1.0, low_open=True)

    @property
    def side(self) -> int:
        """The model's input side in pixels."""
        return self.input_size or DEFAULT_INPUT_SIZE

    @property
    def short_side(self) -> int:
        """The side the image's shorter side is brought to before the model's input is taken from it."""
        if self.resize_mode == "stretch":
            return self.side
        return self.resize or default_resize(self.side)

    def describe(self) -> str:
        size = (f"shorter side to {self.short_side}, centre {self.side}x{self.side}"
                if self.resize_mode == "crop" else f"stretched to {self.side}x{self.side}")
        return (f"{size}, {self.interpolation}, mean {list(self.mean)}, std {list(self.std)}"
                + (" (ImageNet's)" if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD) else ""))


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    name: str | None = None
    version: str | None = None
    format: str | None = None
    file: str | None = None
    architecture: str | None = None
    labels: tuple[str, ...] | None = None
    multi_label: bool = False
    threshold: float = DEFAULT_THRESHOLD
    outputs: str = "logits"
    preprocessing: Preprocessing = dataclasses.field(default_factory=Preprocessing)
    # {"bf16": 0.9967, ...}: top-1 agreement with fp32; `auto` picks a reduced precision only from here.
    precision_agreement: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for field in ("name", "version", "file", "architecture"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise MetadataError(f"{field} must be a non-empty string, not {value!r}")
        if self.format is not None:
            _choice("format", self.format, FORMATS)
        if self.format == STATE_DICT and not self.architecture:
            raise MetadataError("a state dict needs architecture: the torchvision model it is loaded into")
        if self.labels is not None:
            if not self.labels:
                raise MetadataError("labels is empty: name the classes, or leave labels out to use class indices")
            if not all(isinstance(label, str) and label for label in self.labels):
                raise MetadataError("labels must be non-empty strings")
            duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
            if duplicates:
                raise MetadataError(f"labels are not unique: {', '.join(map(repr, duplicates))}")
        _bool("multi_label", self.multi_label)
        _number("threshold", self.threshold, low=0.0, high=1.0, open_ends=True)
        _choice("outputs", self.outputs, OUTPUTS)
        for precision, value in self.precision_agreement.items():
            _number(f"precision_agreement.{precision}", value, low=0.0, high=1.0)

    @property
    def activation(self) -> str:
        if self.outputs == "probabilities":
            return "none"
        return "sigmoid" if self.multi_label else "softmax"

    def with_labels(self, classes: int) -> ModelMetadata:
        """Labels for a model with `classes` outputs: its own (checked against the count), else the indices."""
        if self.labels is None:
            return dataclasses.replace(self, labels=tuple(str(index) for index in range(classes)))
        if len(self.labels) != classes:
            raise ModelFolderError(f"the model has {classes} outputs but metadata.json names {len(self.labels)} "
                                   "labels; they must match one to one")
        return self

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["preprocessing"] = {key: value for key, value in values["preprocessing"].items() if value is not None}
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, values: Any) -> ModelMetadata:
        if not isinstance(values, dict):
            raise MetadataError("metadata.json must hold a JSON object")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MetadataError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(values)
        if "labels" in values:
            labels = values["labels"]
            if not isinstance(labels, list):
                raise MetadataError(f"labels must be a list of names, not {labels!r}")
            values["labels"] = tuple(labels)
        if "precision_agreement" in values and not isinstance(values["precision_agreement"], dict):
            raise MetadataError("precision_agreement must be an object, e.g. {\"bf16\": 0.998}")
        values["preprocessing"] = _preprocessing(values.get("preprocessing", {}))
        return cls(**values)


def _preprocessing(values: Any) -> Preprocessing:
    if not isinstance(values, dict):
        raise MetadataError("preprocessing must be an object")
    values = dict(values)
    if "crop" in values:  # the first layout's name of the input side
        values.setdefault("input_size", values.pop("crop"))
    known = {field.name for field in dataclasses.fields(Preprocessing)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MetadataError(f"unknown preprocessing field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key in ("mean", "std"):
        if key in values:
            if not isinstance(values[key], list):
                raise MetadataError(f"preprocessing.{key} must be a list of 3 numbers, not {values[key]!r}")
            values[key] = tuple(values[key])
    return Preprocessing(**values)


def _side(name: str, value: Any) -> None:
    low, high = SIDE_RANGE
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MetadataError(f"{name}={value!r} must be a whole number of pixels from {low} to {high}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MetadataError(f"{name}={value!r} must be one of {', '.join(choices)}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise MetadataError(f"{name}={value!r} must be true or false")


def _number(name: str, value: Any, *, low: float, high: float, open_ends: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = low < value < high if open_ends else low <= value <= high
    if not ok:
        bounds = f"between {low} and {high}, exclusive" if open_ends else f"in [{low}, {high}]"
        raise MetadataError(f"{name}={value!r} must be a finite number {bounds}")


def _triple(name: str, value: Any, *, low: float, high: float, low_open: bool = False) -> None:
    if not isinstance(value, tuple) or len(value) != 3:
        raise MetadataError(f"{name}={list(value) if isinstance(value, tuple) else value!r} must be 3 numbers, "
                            "one per channel (R, G, B)")
    for channel, number in zip("RGB", value):
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
        if ok:
            ok = (low < number if low_open else low <= number) and number <= high
        if not ok:
            what = f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]"
            raise MetadataError(f"{name} {channel}={number!r} must be a finite number {what} (pixels scale 0 to 1)")


def write_metadata(folder: Path, metadata: ModelMetadata) -> None:
    """Replace `metadata.json` whole (temporary file, then rename): a reader never sees half of it."""
    with atomic_write(Path(folder) / METADATA_FILE) as handle:
        handle.write(json.dumps(metadata.to_dict(), indent=2) + "\n")


def parse_metadata(text: str, where: str) -> ModelMetadata:
    """Metadata from JSON text; one line naming `where` and the broken rule otherwise."""
    try:
        return ModelMetadata.from_dict(json.loads(text))
    except json.JSONDecodeError as error:
        raise ModelFolderError(f"{where} is not valid JSON: {error}") from None
    except (MetadataError, TypeError) as error:
        raise ModelFolderError(f"{where} is not valid model metadata: {error}") from None


def read_metadata(folder: Path) -> ModelMetadata:
    """The folder's `metadata.json`, or the defaults when it has none."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        return ModelMetadata()
    return parse_metadata(path.read_text(encoding="utf-8"), str(path))

"""Load a registered model for scoring, whatever its format, without running pickled code.

`load_model(path)` finds the model file and its format (`scoring.model_format`),
reads its bytes once, hashes those same bytes (the digest the rows carry) and
builds the module from them:
- a `torch.export` program: its archive is checked first to hold no pickled
  payload (weights, constants and sample inputs must be plain tensors), then
  `torch.export.load`; a dynamic batch dimension is used as is, a fixed one is
  honoured by padding (`LoadedModel.fixed_batch`);
- a TorchScript archive: `torch.jit.load` (TorchScript's own loader, no Python
  classes);
- a state dict: `torch.load(weights_only=True)` into the torchvision architecture
  the metadata names (weights never come from a hub).
One forward of a blank image tells the number of classes, which fills in the
labels when the metadata has none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torchvision

from scoring.model_format import IMPORT_COMMAND, ModelFile, describe_format, locate
from scoring.model_metadata import (  # noqa: F401 - the model's public names, re-exported
    METADATA_FILE,
    STATE_DICT,
    TORCH_EXPORT,
    TORCHSCRIPT,
    ModelFolderError,
    ModelMetadata,
    Preprocessing,
    read_metadata,
    write_metadata,
)

WEIGHTS_FILE = "weights.pt"  # a state dict's file name in folders this project writes
PROGRAM_FILE = "model.pt2"  # an exported program's file name in folders this project writes


@dataclasses.dataclass
class LoadedModel:
    module: torch.nn.Module
    metadata: ModelMetadata  # labels filled in, input size known
    format: str
    digest: str  # sha256 of the bytes the module was built from
    path: Path
    fixed_batch: int | None = None  # a program exported with a static batch dimension runs at that size

    def describe(self) -> str:
        labels = self.metadata.labels or ()
        shown = ", ".join(labels[:5]) + (f", … ({len(labels)} classes)" if len(labels) > 5 else "")
        batch = f"fixed batch {self.fixed_batch}" if self.fixed_batch else "dynamic batch"
        return (f"{describe_format(self.format)} {self.path.name}, {batch}, classes: {shown}; "
                f"{'multi-label, sigmoid >= ' + str(self.metadata.threshold) if self.metadata.multi_label else 'softmax' if self.metadata.activation == 'softmax' else 'probabilities as output'}; "
                f"preprocessing: {self.metadata.preprocessing.describe()}")


def build_model(architecture: str, num_classes: int) -> torch.nn.Module:
    """An untrained torchvision classifier; weights never come from a hub."""
    try:
        return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)
    except ValueError as error:
        raise ModelFolderError(f"unknown torchvision architecture {architecture!r}: {error}") from None


def save_model_folder(folder: Path, model: torch.nn.Module, metadata: ModelMetadata) -> None:
    """A state-dict folder: `weights.pt` and `metadata.json` (with the format and architecture stated)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    # Metadata last: a folder with metadata is a complete folder.
    write_metadata(folder, dataclasses.replace(metadata, format=STATE_DICT, file=WEIGHTS_FILE))


def load_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """The model at `path` (file or folder), on `device`, in eval mode; refuses anything that would run pickled
    code, in one line."""
    found = locate(Path(path))
    data = found.path.read_bytes()  # one read: the digest and the module come from the same bytes
    digest = hashlib.sha256(data).hexdigest()
    loader = {TORCH_EXPORT: _load_program, TORCHSCRIPT: _load_torchscript, STATE_DICT: _load_state_dict}
    module, metadata, fixed_batch = loader[found.format](found, data)
    module = module.to(device)
    pre = metadata.preprocessing
    metadata = dataclasses.replace(metadata, preprocessing=dataclasses.replace(pre, input_size=pre.side))
    metadata = metadata.with_labels(_classes(module, pre.side, fixed_batch, device))
    return LoadedModel(module, metadata, found.format, digest, found.path, fixed_batch)


def _load_state_dict(found: ModelFile, data: bytes):
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFolderError(f"refusing {found.path}: it is not a plain state dict and loading it would execute "
                               f"pickled code ({first_line}); convert it with {IMPORT_COMMAND}") from None
    metadata = found.metadata
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelFolderError(f"{found.path} holds no state dict (a mapping of names to tensors)")
    classes = len(metadata.labels) if metadata.labels else _output_width(state)
    model = build_model(metadata.architecture, classes)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFolderError(f"{found.path} does not fit architecture {metadata.architecture!r}: "
                               f"{first_line}") from None
    return model.eval(), metadata, None


def _output_width(state: dict[str, torch.Tensor]) -> int:
    """The classifier's output count: the length of the state dict's last bias (torchvision puts the head last)."""
    biases = [value for key, value in state.items() if key.endswith("bias") and value.dim() == 1]
    if not biases:
        raise ModelFolderError("cannot tell the number of classes from the state dict: list the labels in "
                               "metadata.json")
    return int(biases[-1].numel())


def _load_torchscript(found: ModelFile, data: bytes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": the format is still loaded
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelFolderError(f"{found.path} is not a loadable TorchScript archive: {first_line}") from None
    return module.eval(), found.metadata, None


def _load_program(found: ModelFile, data: bytes):
    check_program_archive(found.path, data)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - any failure to deserialize is this file's problem, in one line
        text = " ".join(str(error).split())[:300]
        raise ModelFolderError(f"{found.path} is not a loadable torch.export program: {type(error).__name__}: "
                               f"{text}") from None
    shape = _input_shape(program)
    if shape is None or len(shape) != 4:
        raise ModelFolderError(f"{found.path} does not take one image batch (N, 3, H, W) as its input; export it "
                               "with a single tensor argument")
    batch, channels, height, width = shape
    metadata = found.metadata
    if isinstance(channels, int) and channels != 3:
        raise ModelFolderError(f"{found.path} takes {channels} channels; images are scored as RGB (3 channels)")
    if isinstance(height, int) and isinstance(width, int):
        if height != width:
            raise ModelFolderError(f"{found.path} takes {height}x{width} inputs; only square inputs are supported")
        metadata = _with_input_size(metadata, height, found)
    return program.module(), metadata, batch if isinstance(batch, int) else None


def _with_input_size(metadata: ModelMetadata, size: int, found: ModelFile) -> ModelMetadata:
    """A program with a static image size states it; metadata that says otherwise is a mistake, said so."""
    declared = metadata.preprocessing.input_size
    if declared is not None and declared != size:
        raise ModelFolderError(f"metadata.json says input_size {declared} but {found.path.name} takes {size}x{size} "
                               "images")
    return dataclasses.replace(metadata, preprocessing=dataclasses.replace(metadata.preprocessing, input_size=size))


def _input_shape(program) -> tuple | None:
    """The (N, C, H, W) of the program's one user input: ints where static, None where symbolic."""
    user_inputs = program.graph_signature.user_inputs
    if len(user_inputs) != 1:
        return None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            value = node.meta.get("val")
            if value is None:
                return None
            return tuple(int(side) if isinstance(side, int) else None for side in value.shape)
    return None


def check_program_archive(path: Path, data: bytes) -> None:
    """Refuse a `.pt2` archive that carries pickled payloads: `torch.export.load` would unpickle them with
    `weights_only=False` (weights and constants marked `use_pickle`, opaque objects, legacy `.pt` weights, and
    sample inputs that a weights-only load refuses)."""
    refuse = f"refusing {path}: it carries pickled Python objects ({{}}), which loading would run; re-export " \
             "the model with torch.export from plain tensors, or convert it with " + IMPORT_COMMAND
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.endswith(("/model_weights_config.json", "/model_constants_config.json")) or \
                    "_weights_config.json" in name or "_constants_config.json" in name:
                config = json.loads(archive.read(name)).get("config", {})
                for fqn, payload in config.items():
                    if payload.get("use_pickle"):
                        raise ModelFolderError(refuse.format(f"{fqn} in {name.rsplit('/', 1)[-1]}"))
                    if not str(payload.get("path_name", "")).startswith(("weight_", "tensor_")):
                        raise ModelFolderError(refuse.format(f"{fqn} is a custom object"))
            elif "/data/weights/" in name and name.endswith(".pt") or "/data/constants/" in name and \
                    name.endswith(".pt"):
                raise ModelFolderError(refuse.format(f"legacy pickled payload {name.rsplit('/', 1)[-1]}"))
            elif "/data/sample_inputs/" in name:
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:  # noqa: BLE001 - anything a weights-only load refuses is refused here
                    raise ModelFolderError(refuse.format("its sample inputs")) from None


def _classes(module: torch.nn.Module, size: int, fixed_batch: int | None, device) -> int:
    with torch.inference_mode():
        output = module(torch.zeros(fixed_batch or 1, 3, size, size, device=device))
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelFolderError(f"the model returns {shape}, not one row of class scores per image (N, classes)")
    return int(output.shape[1])

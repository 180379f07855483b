"""Which model a path holds and how it is stored, found from its bytes; no torch here, nothing unpickled.

A registered model is a file or a folder. A folder holds one model file and,
optionally, `metadata.json`; a file alone is described by defaults. The format
is read from the file itself, whatever its name:
- a `torch.export` program (`.pt2`: a zip whose `archive_format` says `pt2`);
- a TorchScript archive (a zip with `code/` and `constants.pkl`);
- a state dict (`torch.save` of tensors only), loaded into a torchvision architecture;
- a whole pickled model (`torch.save(model)`): refused; it would run pickled code.
  `python -m scoring import-model` turns it into a `.pt2` program on a machine that trusts it.
A state dict and a pickled model are both pickles: their opcodes are read (never run) and any
global outside torch's own and `collections` marks code. The job loads a state dict with
`torch.load(weights_only=True)` all the same.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickletools
import stat
import zipfile
from pathlib import Path

from scoring.model_metadata import (
    METADATA_FILE,
    STATE_DICT,
    TORCH_EXPORT,
    TORCHSCRIPT,
    ModelFolderError,
    ModelMetadata,
    read_metadata,
)

IMPORT_COMMAND = "python -m scoring import-model"
MODEL_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".torchscript", ".zip", ".bin")
# What a state dict's pickle may name: torch's tensor rebuilders and storages, and ordered dicts.
_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict")


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """The model file a path holds, its format and its metadata (the folder's `metadata.json`, or defaults)."""

    path: Path
    format: str
    metadata: ModelMetadata
    metadata_path: Path | None = None


def locate(model: Path) -> ModelFile:
    """The model file under `model` (a file or a folder) with its format; refuses what the job must not load."""
    model = Path(model)
    if not model.exists():
        raise ModelFolderError(f"model {model} does not exist")
    metadata, metadata_path = ModelMetadata(), None
    if model.is_dir():
        metadata = read_metadata(model)
        if (model / METADATA_FILE).is_file():
            metadata_path = model / METADATA_FILE
        model = model / metadata.file if metadata.file else _only_model_file(model)
    elif (model.parent / METADATA_FILE).is_file():
        # A file named inside its own folder (`out/model.pt2`): the metadata beside it describes it, if it names it.
        beside = read_metadata(model.parent)
        if beside.file in (None, model.name):
            metadata, metadata_path = beside, model.parent / METADATA_FILE
    _check_regular(model)
    found = sniff(model)
    if metadata.format and metadata.format != found:
        raise ModelFolderError(f"metadata.json says format {metadata.format!r} but {model.name} holds a "
                               f"{describe_format(found)}")
    if found == STATE_DICT and not metadata.architecture:
        raise ModelFolderError(f"{model.name} is a state dict: metadata.json must name its torchvision architecture "
                               f"(\"architecture\": \"resnet18\"), or export the model with {IMPORT_COMMAND}")
    return ModelFile(model, found, dataclasses.replace(metadata, format=found), metadata_path)


def describe_format(found: str) -> str:
    return {TORCH_EXPORT: "torch.export program (.pt2)", TORCHSCRIPT: "TorchScript archive",
            STATE_DICT: "state dict (weights only)"}[found]


def _only_model_file(folder: Path) -> Path:
    candidates = sorted(path for path in folder.iterdir()
                        if path.suffix.lower() in MODEL_SUFFIXES and not path.name.startswith("."))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelFolderError(f"model folder {folder} holds no model file ({', '.join(MODEL_SUFFIXES)})")
    raise ModelFolderError(f"model folder {folder} holds {len(candidates)} model files "
                           f"({', '.join(path.name for path in candidates)}): name the one to use in metadata.json "
                           "(\"file\": \"…\")")


def _check_regular(path: Path) -> None:
    """A model file must be a plain file: a FIFO or a device (/dev/zero) would block or never end."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ModelFolderError(f"cannot read model file {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelFolderError(f"model file {path} is not a regular file (a FIFO, device or folder): refused")
    if info.st_size == 0:
        raise ModelFolderError(f"model file {path} is empty")


def sniff(path: Path) -> str:
    """The format of one model file, from its bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(handle) as archive:
                    return _sniff_zip(path, archive)
            except zipfile.BadZipFile as error:
                raise ModelFolderError(f"{path.name} looks like a zip archive but is broken ({error})") from None
        handle.seek(0)
        if head[:1] == b"\x80":  # torch.save's legacy (non-zip) format is a pickle
            return _sniff_pickle(path, handle.read())
    raise ModelFolderError(f"{path.name} is not a PyTorch model file (torch.export .pt2, TorchScript, or a state "
                           "dict saved with torch.save)")


def _sniff_zip(path: Path, archive: zipfile.ZipFile) -> str:
    names = archive.namelist()
    roots = {name.split("/", 1)[1] for name in names if "/" in name}
    if "archive_format" in roots:
        root = next(name for name in names if name.endswith("/archive_format"))
        if archive.read(root).strip() == b"pt2":
            return TORCH_EXPORT
    if "constants.pkl" in roots and any(name.startswith("code/") for name in roots):
        return TORCHSCRIPT
    if "data.pkl" in roots:
        data = archive.read(next(name for name in names if name.endswith("/data.pkl") and name.count("/") == 1))
        return _sniff_pickle(path, data)
    raise ModelFolderError(f"{path.name} is a zip archive but no PyTorch model (no .pt2 program, TorchScript or "
                           "torch.save data in it)")


def _pickle_globals(data: bytes) -> set[str]:
    """Every `module.name` a pickle would import, read from its opcodes; '?' where a name cannot be told."""
    names: set[str] = set()
    pushed: list[str | None] = []  # what the last opcodes put on the stack, as far as globals care
    memo: dict[int, str | None] = {}
    for opcode, argument, _position in pickletools.genops(io.BytesIO(data)):
        kind = opcode.name
        if kind in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING",
                    "STRING"):
            pushed.append(argument if isinstance(argument, str) else None)
        elif kind in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo.get(int(argument)))
        elif kind == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif kind in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(argument)] = pushed[-1] if pushed else None
        elif kind == "GLOBAL":
            names.add(argument.replace(" ", "."))
            pushed.append(None)
        elif kind == "STACK_GLOBAL":
            module, name = (pushed[-2:] if len(pushed) >= 2 else [None, None])
            names.add(f"{module}.{name}" if module and name else "?")
            pushed.append(None)
        else:
            pushed.append(None)
        del pushed[:-4]
    return names


def _sniff_pickle(path: Path, data: bytes) -> str:
    try:
        names = _pickle_globals(data)
    except Exception as error:  # noqa: BLE001 - a broken pickle is a broken file, whatever pickletools says
        raise ModelFolderError(f"{path.name} is a damaged torch.save file ({type(error).__name__})") from None
    code = sorted(name for name in names if not name.startswith(_SAFE_GLOBAL_PREFIXES))
    if code:
        raise ModelFolderError(
            f"{path.name} is a whole pickled model (it names {', '.join(code[:3])}): loading it would run pickled "
            f"code, which the job never does. Convert it where you trust it: {IMPORT_COMMAND} --pickled {path.name} "
            "--trust_pickled_code --out <folder>")
    return STATE_DICT


def model_identity(model: Path, name: str | None = None, version: str | None = None) -> tuple[str, str]:
    """The (name, version) rows carry: as given (the registry's), else the metadata's, else the file's name and 0."""
    metadata = locate(Path(model)).metadata
    return name or metadata.name or Path(model).stem, version or metadata.version or "0"

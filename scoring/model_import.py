"""`python -m scoring import-model`: bring the model you have into the form the job loads, a `.pt2` folder.

What people have registered is often a whole pickled `nn.Module`
(`torch.save(model)`), sometimes a TorchScript file or a state dict of a
torchvision architecture. This command loads it once, on the user's machine and
only on their word (`--trust_pickled_code`: unpickling runs the file's code),
exports it with `torch.export` with a dynamic batch dimension, checks that the
program gives the original's outputs (the largest difference is printed; a
difference above `--tolerance` fails the import), writes `model.pt2` and
`metadata.json` to --out, optionally records the reduced-precision agreement on
sample images, and prints the commands that register the folder. The job then
never unpickles code.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scoring.model_metadata import (
    INTERPOLATIONS,
    METADATA_FILE,
    OUTPUTS,
    RESIZE_MODES,
    TORCH_EXPORT,
    MetadataError,
    ModelFolderError,
    ModelMetadata,
    Preprocessing,
    write_metadata,
)

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: `python -m scoring` builds this command's options for every command, and
# `score`'s main process (and `--help`) must not pay torch's import time and memory.
log = logging.getLogger(__name__)
SAMPLES = 4  # random images the outputs are compared on, besides --check_images
DEFAULT_TOLERANCE = 1e-4


class ImportFailed(RuntimeError):
    """The model could not be imported; the message is the one line to show."""


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pickled", type=Path, help="a whole model saved with torch.save(model); needs "
                                                     "--trust_pickled_code")
    source.add_argument("--torchscript", type=Path, help="a TorchScript archive (torch.jit.save)")
    source.add_argument("--state_dict", type=Path, help="a state dict (torch.save(model.state_dict())); needs "
                                                        "--architecture")
    parser.add_argument("--trust_pickled_code", action="store_true",
                        help="you trust the pickled file: loading it runs whatever code it names")
    parser.add_argument("--code_path", type=Path, action="append", default=[],
                        help="a folder holding the model's Python classes (repeatable), put first on the import path")
    parser.add_argument("--architecture", help="torchvision architecture of a state dict, e.g. resnet50")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write (model.pt2, metadata.json)")
    parser.add_argument("--name", help="model name, as it will be registered")
    parser.add_argument("--version", help="model version, as it will be registered")
    parser.add_argument("--labels", help="class names in output order: a file with one per line, or a "
                                         "comma-separated list (default: class indices 0, 1, ...)")
    parser.add_argument("--multi_label", action="store_true",
                        help="a sigmoid per class instead of one softmax; classes at or above --threshold predicted")
    parser.add_argument("--threshold", type=float, default=None, help="multi-label threshold (default 0.5)")
    parser.add_argument("--outputs", choices=OUTPUTS, default="logits",
                        help="what the model returns: logits (default), or probabilities it computes itself")
    parser.add_argument("--input_size", type=int, default=None, help="the model's square input side (default 224)")
    parser.add_argument("--resize", type=int, default=None,
                        help="crop mode: shorter side before the centre crop (default: input_size x 256/224)")
    parser.add_argument("--resize_mode", choices=RESIZE_MODES, default="crop",
                        help="crop: shorter side to --resize, then the centre square; stretch: the whole image "
                             "to the square")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear", help="resize interpolation")
    parser.add_argument("--mean", type=float, nargs=3, default=None, help="per-channel mean (default ImageNet's)")
    parser.add_argument("--std", type=float, nargs=3, default=None, help="per-channel std (default ImageNet's)")
    parser.add_argument("--check_images", type=Path, default=None,
                        help="a folder of representative images: outputs are also compared on them, and the "
                             "reduced-precision agreement is recorded (what check-precision does)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest output difference allowed between the original and the program, relative "
                             "to the outputs' magnitude")


def import_model_command(args: argparse.Namespace) -> int:
    from scoring.precision_check import record_agreement

    try:
        metadata = _metadata(args)
        original = load_original(args)
        result = import_model(original, metadata, args.out, tolerance=args.tolerance,
                              images=sorted(p for p in args.check_images.rglob("*") if p.is_file())
                              if args.check_images else ())
    except (MetadataError, ImportFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {result.program} ({result.classes} classes, dynamic batch); largest output difference "
          f"against the original: {result.difference:.3g} over {result.samples} inputs (tolerance "
          f"{args.tolerance:g})")
    if args.check_images:
        record = record_agreement(args.out, [str(path) for path in result.images])
        print("top-1 agreement with fp32: " + ", ".join(f"{key} {value:.2%}" for key, value in sorted(record.items()))
              + f"; recorded in {args.out / METADATA_FILE}")
    name, version = metadata.name or args.out.name, metadata.version or "1"
    print("register it:")
    print(f"  Azure ML:          az ml model create --name {name} --version {version} --type custom_model "
          f"--path {args.out}")
    print(f"  embedded default:  python -m localml register-model --path {args.out} --name {name} --version {version}")
    return 0


def _metadata(args: argparse.Namespace) -> ModelMetadata:
    labels = None
    if args.labels:
        path = Path(args.labels)
        names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else args.labels.split(",")
        labels = tuple(name.strip() for name in names if name.strip())
    extra = {"threshold": args.threshold} if args.threshold is not None else {}
    if args.threshold is not None and not args.multi_label:
        raise MetadataError("--threshold applies to a multi-label model: add --multi_label")
    preprocessing = Preprocessing(
        input_size=args.input_size, resize=args.resize, resize_mode=args.resize_mode,
        interpolation=args.interpolation,
        **({"mean": tuple(args.mean)} if args.mean else {}), **({"std": tuple(args.std)} if args.std else {}))
    return ModelMetadata(name=args.name, version=args.version, labels=labels, multi_label=args.multi_label,
                         outputs=args.outputs, preprocessing=preprocessing, **extra)


def load_original(args: argparse.Namespace) -> torch.nn.Module:
    """The model as the user has it, in eval mode on the CPU."""
    import torch

    from scoring.model import build_model

    if args.pickled:
        if not args.trust_pickled_code:
            raise ImportFailed(f"{args.pickled} is a pickle: loading it runs the code it names. If you trust the "
                               "file, add --trust_pickled_code (and --code_path for its classes)")
        for folder in reversed(args.code_path):
            sys.path.insert(0, str(folder.resolve()))
        try:
            model = torch.load(args.pickled, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError) as error:
            raise ImportFailed(f"cannot unpickle {args.pickled}: {error}; put the folder that defines the model's "
                               "classes on the path with --code_path") from None
        if isinstance(model, dict):
            raise ImportFailed(f"{args.pickled} holds a state dict, not a model: use --state_dict with "
                               "--architecture")
        if not isinstance(model, torch.nn.Module):
            raise ImportFailed(f"{args.pickled} holds a {type(model).__name__}, not a torch.nn.Module")
        return model.eval()
    if args.torchscript:
        try:
            return torch.jit.load(args.torchscript, map_location="cpu").eval()
        except RuntimeError as error:
            raise ImportFailed(f"{args.torchscript} is not a TorchScript archive: "
                               f"{str(error).splitlines()[0]}") from None
    if not args.architecture:
        raise ImportFailed("--state_dict needs --architecture, the torchvision model it belongs to")
    state = torch.load(args.state_dict, map_location="cpu", weights_only=True)
    labels = args.labels and _metadata(args).labels
    biases = [value for key, value in state.items() if key.endswith("bias") and value.dim() == 1]
    classes = len(labels) if labels else int(biases[-1].numel())
    model = build_model(args.architecture, classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())  # torch's message spans lines: the first is only a heading
        raise ImportFailed(f"{args.state_dict} does not fit {args.architecture}: "
                           f"{detail[:300]}{'...' if len(detail) > 300 else ''}") from None
    return model.eval()


@dataclasses.dataclass(frozen=True)
class ImportResult:
    program: Path
    classes: int
    difference: float
    samples: int
    images: tuple[Path, ...]


def import_model(original: torch.nn.Module, metadata: ModelMetadata, out: Path, *,
                 tolerance: float = DEFAULT_TOLERANCE, images=()) -> ImportResult:
    """Export `original` to `out/model.pt2` with `metadata.json`; checks outputs on random inputs and `images`."""
    import torch

    from scoring.model import PROGRAM_FILE, load_model

    side = metadata.preprocessing.side
    example = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    program = export(original, example)
    out.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out / PROGRAM_FILE)
    metadata = dataclasses.replace(metadata, format=TORCH_EXPORT, file=PROGRAM_FILE)
    write_metadata(out, metadata)
    loaded = load_model(out)  # as the job loads it: checks the archive, fills in the labels
    if metadata.labels is None:
        write_metadata(out, dataclasses.replace(metadata, labels=loaded.metadata.labels))
    inputs, used = _samples(loaded.metadata, side, images)
    with torch.inference_mode():
        expected, found = original(inputs).float(), loaded.module(inputs).float()
    difference = float((expected - found).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    if difference > tolerance * scale:
        raise ImportFailed(f"the exported program's outputs differ from the original's by {difference:.3g} "
                           f"(tolerance {tolerance:g} x {scale:.3g}); the model may behave differently when traced "
                           "(randomness, Python-side state): fix that, or raise --tolerance if it is expected")
    return ImportResult(out / PROGRAM_FILE, len(loaded.metadata.labels), difference, len(inputs), tuple(used))


def export(module: torch.nn.Module, example: torch.Tensor):
    """A `torch.export` program of `module` whose batch dimension is dynamic."""
    import torch

    try:
        if isinstance(module, torch.jit.ScriptModule):
            # torch.export does not take a ScriptModule; PyTorch's converter turns one into a program, whose
            # module is exported again below so that only the batch dimension is dynamic, as for any other model.
            from torch._export.converter import TS2EPConverter

            module = TS2EPConverter(module, (example,)).convert().module()
        return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    except Exception as error:  # noqa: BLE001 - export failures come in many types; say which, in one line
        text = " ".join(str(error).split())[:400]
        raise ImportFailed(f"torch.export could not export the model: {type(error).__name__}: {text} (see "
                           "https://pytorch.org/docs/stable/export.html for what a program may contain)") from None


def _samples(metadata: ModelMetadata, side: int, images) -> tuple[torch.Tensor, list[Path]]:
    """Random inputs, plus the first images of `images` preprocessed as the job does."""
    import torch

    from scoring.image_decode import ImageDecodeError, Preprocessor, decode_image

    batch = [torch.randn(SAMPLES, 3, side, side, generator=torch.Generator().manual_seed(1))]
    preprocess, used = Preprocessor(metadata.preprocessing), []
    for path in images:
        try:
            batch.append(preprocess(decode_image(path, min_side=metadata.preprocessing.short_side)).unsqueeze(0))
            used.append(path)
        except ImageDecodeError:
            continue
    return torch.cat(batch[:1 + 32]), used


__all__ = ["ImportFailed", "ModelFolderError", "add_import_arguments", "import_model", "import_model_command"]

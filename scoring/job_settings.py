"""The one definition of a scoring job's settings: every consumer derives from the fields below.

Four groups:
- **parallel settings**, named and meant as in azure-ai-ml's parallel job
  (`mini_batch_size`, thresholds, retries, instances, workers, logging level);
- the **scoring profile** (device, precision, channels-last, batch size, decode
  threads, decoder, compile, pixel limit), which reaches the entry script as program arguments;
- **outputs**: which of the model's outputs predictions.csv carries (top-k, every
  class's score), also program arguments;
- **local runs**: what only the embedded default's job and the CLI need (they
  fetch the month themselves; on Azure ML the service mounts it).

The trigger form's Params (`param_schemas`), the CLI's options and the entry
script's arguments (`add_cli_options`), the program arguments of a job
(`program_arguments`) and the validation (`JobSettings.__post_init__`) all read
the same field metadata: adding a setting is adding a field here.
This module imports nothing heavy so that DAG files and plugins may use it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from typing import Any

UNLIMITED = -1
AUTO = "auto"
PARALLEL = "Job settings"
PROFILE = "Scoring profile"
OUTPUTS = "Outputs"
LOCAL = "Local runs"
# The groups every worker receives as program arguments (they change the rows it writes).
WORKER_GROUPS = (PROFILE, OUTPUTS)

# What azure-ai-ml's parallel job accepts for logging_level (its schema refuses ERROR and CRITICAL).
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING")
DEVICES = (AUTO, "cpu", "cuda")
PRECISIONS = (AUTO, "fp32", "bf16", "fp16")
SWITCHES = (AUTO, "on", "off")
DECODERS = (AUTO, "pillow", "torchvision")
# Decompression-bomb guard: far above any photo, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000
# The memory one worker may need, for the auto worker count: its runtime and model, plus one image at the pixel
# limit being decoded (peak measured by `python -m bench.decode_memory`: 13 bytes per pixel for an RGBA PNG
# flattened onto white, 11 for 16-bit grey).
WORKER_RUNTIME_GB = 1.0
DECODE_BYTES_PER_PIXEL = 16


class JobSettingsError(ValueError):
    """A job setting is out of range; the message names the setting and the value."""


def _setting(title: str, default: Any, help: str, *, group: str = PARALLEL, minimum: int | None = None,
             choices: tuple[str, ...] | None = None) -> Any:
    """A setting: its form title (words, not the field name), default, help text and bounds."""
    return dataclasses.field(default=default, metadata={"title": title, "help": help, "group": group,
                                                        "minimum": minimum, "choices": choices})


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Settings of one parallel scoring job; the field metadata is the form, the CLI and the validation."""

    mini_batch_size: int = _setting("Files per mini-batch", 64, "Files per mini-batch, i.e. per run() call.",
                                    minimum=1)
    mini_batch_error_threshold: int = _setting("Failed mini-batches tolerated",
        5, "Failed mini-batches tolerated over the job (-1: no limit).", minimum=UNLIMITED)
    error_threshold: int = _setting("Failed images tolerated",
        50, "Failed images tolerated over the job, every image in errors.csv counted (-1: no limit).",
        minimum=UNLIMITED)
    max_retries: int = _setting("Retries per mini-batch",
        2, "Retries of a mini-batch that raised, timed out or lost its worker.", minimum=0)
    timeout: int = _setting("Mini-batch timeout (s)", 300, "Seconds one run() call may take before it is retried.",
                            minimum=1)
    instance_count: int = _setting("Nodes", 1, "Nodes of the compute cluster (locally: slices of this machine).",
                                   minimum=1)
    max_concurrency_per_instance: int = _setting(
        "Workers per node", 0,
        "Worker processes per node, each calling init() once (0: auto, one per core of the node, at most one "
        f"per {WORKER_RUNTIME_GB:g} GB + {DECODE_BYTES_PER_PIXEL} bytes per pixel of max_pixels of its memory, "
        "i.e. 2 GB at the default max_pixels).", minimum=0)
    logging_level: str = _setting("Log level", "INFO", "Log level of the job and its workers.", choices=LOGGING_LEVELS)

    device: str = _setting(
        "Device", AUTO, "auto: CUDA when the node has a usable GPU, else CPU. cuda fails at init() when CUDA is not "
        "usable, rather than scoring on CPU.", group=PROFILE, choices=DEVICES)
    precision: str = _setting(
        "Precision", AUTO, "auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; a reduced precision only "
        "where the model's recorded top-1 agreement with fp32 is >= 99.5%.", group=PROFILE, choices=PRECISIONS)
    channels_last: str = _setting("Channels-last layout", AUTO, "NHWC memory layout for convolutions (auto: on).",
                                  group=PROFILE, choices=SWITCHES)
    batch_size: int = _setting(
        "Images per forward pass", 0, "Images per forward pass (0: auto, 32 on CPU, what fits the GPU on CUDA; never "
        "more than mini_batch_size).", group=PROFILE, minimum=0)
    decode_threads: int = _setting(
        "Decoding threads per worker", -1, "Decoding threads per worker (-1: auto, inline on CPU, the node's cores "
        "shared among workers on CUDA; 0: inline).", group=PROFILE, minimum=UNLIMITED)
    decoder: str = _setting(
        "JPEG decoder", AUTO, "auto: Pillow on CPU; on CUDA, torchvision's batched decode_jpeg on the GPU (nvJPEG) "
        "where a probe at init() on the month's own JPEGs finds it faster than Pillow on this worker's cores. pillow: every file on the CPU. "
        "torchvision: JPEGs decoded and resized in batches on the scoring device; other files, and JPEGs it "
        "refuses, through Pillow.", group=PROFILE, choices=DECODERS)
    compile: bool = _setting(
        "Compile the model (torch.compile)", False, "torch.compile the model: ~18 s per worker up front, ~18% faster "
        "forward on CPU; pays only on long runs.", group=PROFILE)
    max_pixels: int = _setting(
        "Largest image (pixels)", DEFAULT_MAX_PIXELS, "Decompression-bomb limit: images with more pixels are listed "
        "as too_large.", group=PROFILE, minimum=1)

    top_k: int = _setting(
        "Classes per image (top k)", 1, "Classes per image in predictions.csv, best first: 1 writes label and score; "
        "k > 1 adds label_2, score_2 ... label_k, score_k after score.", group=OUTPUTS, minimum=1)
    all_scores: bool = _setting(
        "Every class's score", False, "Also write every class's probability, as one JSON object per image in the "
        "column scores (what the original job's append_row kept).", group=OUTPUTS)

    storage_timeout: int = _setting(
        "Blob store outage limit (s)", 300, "Seconds a local job or the CLI keeps trying an unreachable blob store "
        "before it fails with one line naming it.", group=LOCAL, minimum=1)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(field, getattr(self, field.name))

    def worker_memory_gb(self) -> float:
        """What one worker may hold at once: its runtime and model, and an image at `max_pixels` decoding."""
        return WORKER_RUNTIME_GB + DECODE_BYTES_PER_PIXEL * self.max_pixels / 2**30

    def for_node(self, cores: int, memory_gb: float | None = None) -> JobSettings:
        """`max_concurrency_per_instance=0` resolved for a node: one worker per core, at most as many as its
        memory holds at `worker_memory_gb` each (the pixel limit and the worker count agree on memory).

        Measured: decoding inline in one process per core is what feeds a GPU best (README, Performance).
        """
        if self.max_concurrency_per_instance:
            return self
        workers = max(1, cores if memory_gb is None else min(cores, int(memory_gb // self.worker_memory_gb())))
        return dataclasses.replace(self, max_concurrency_per_instance=workers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> JobSettings:
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise JobSettingsError(f"unknown job setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def program_arguments(self) -> list[str]:
        """The entry script's arguments: the scoring profile, the outputs, and the workers sharing a node (they
        split its cores)."""
        arguments = []
        for field in (field for group in WORKER_GROUPS for field in settings_fields(group)):
            value = getattr(self, field.name)
            if field.type == "bool":
                arguments.append(f"--{field.name}" if value else f"--no-{field.name}")
            else:
                arguments += [f"--{field.name}", str(value)]
        return arguments + ["--max_concurrency_per_instance", str(self.max_concurrency_per_instance)]


def settings_fields(group: str | None = None) -> Iterator[dataclasses.Field]:
    """The settings of one group (PARALLEL, PROFILE or LOCAL), or all of them, in declaration order."""
    return (field for field in dataclasses.fields(JobSettings) if group in (None, field.metadata["group"]))


def _check(field: dataclasses.Field, value: Any) -> None:
    meta = field.metadata
    if field.type == "bool":
        if not isinstance(value, bool):
            raise JobSettingsError(f"job setting {field.name}={value!r} must be true or false")
        return
    if field.type == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < meta["minimum"]:
            extra = " (-1: no limit)" if meta["minimum"] == UNLIMITED else ""
            raise JobSettingsError(f"job setting {field.name}={value!r} must be an integer >= {meta['minimum']}{extra}")
        return
    if value not in meta["choices"]:
        raise JobSettingsError(f"job setting {field.name}={value!r} must be one of {', '.join(meta['choices'])}")


def param_schemas() -> dict[str, tuple[Any, dict[str, Any]]]:
    """{name: (default, JSON-schema keywords)} for the trigger form's Params: same bounds as the validation."""
    schemas = {}
    for field in settings_fields():
        meta = field.metadata
        schema: dict[str, Any] = {"title": meta["title"], "description": f"{meta['help']} ({field.name})",
                                  "section": meta["group"]}
        if field.type == "bool":
            schema["type"] = "boolean"
        elif field.type == "int":
            schema.update(type="integer", minimum=meta["minimum"])
        else:
            schema.update(type="string", enum=list(meta["choices"]))
        schemas[field.name] = (field.default, schema)
    return schemas


def add_cli_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, group: str | None = None) -> None:
    """`--<name>` for each setting of `group`, with the one default and the one help text."""
    for field in settings_fields(group):
        meta, flag = field.metadata, f"--{field.name}"
        meta = {**meta, "help": meta["help"].replace("%", "%%")}  # argparse formats help text with %
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=meta["help"])
        elif field.type == "int":
            parser.add_argument(flag, type=int, default=field.default, help=meta["help"])
        else:
            parser.add_argument(flag, choices=meta["choices"], default=field.default, help=meta["help"])


def from_namespace(args: argparse.Namespace, group: str | None = None, **overrides: Any) -> JobSettings:
    """The settings an argument parser built by `add_cli_options` read (others keep their defaults)."""
    values = {field.name: getattr(args, field.name) for field in settings_fields(group) if hasattr(args, field.name)}
    return JobSettings(**{**values, **overrides})


def exceeds(count: int, threshold: int) -> bool:
    """True when `count` failures break `threshold` (-1 never breaks)."""
    return threshold != UNLIMITED and count > threshold

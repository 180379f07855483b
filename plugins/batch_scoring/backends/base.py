"""The backend boundary: the few things the workflow asks of an Azure ML workspace.

Two implementations: `AzureMLBackend` (azure-ai-ml v2, a real workspace) and
`LocalBackend` (the embedded default). Operators, the trigger and the DAG see
only this interface, through the verbs of `AzureMLHook` (which holds the backend).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Protocol

from scoring.job_settings import JobSettings
from scoring.job_states import (  # noqa: F401 - the boundary's vocabulary, re-exported
    FAILURE_STATES,
    FINISHED_STATUSES,
    STALLED_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
)


def attempt_name(base_name: str, attempt: int) -> str:
    """Attempt 0 is the base name itself; a resubmission after a failure gets `-r<attempt>`."""
    return base_name if attempt == 0 else f"{base_name}-r{attempt}"


def split_attempt(name: str) -> tuple[str, int]:
    """(base name, attempt) of a job name made by `attempt_name`."""
    match = re.fullmatch(r"(.+)-r(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


def attempt_number(name: str, base_name: str) -> int | None:
    """The attempt `name` is of `base_name`, or None if it is another job's name."""
    if name == base_name:
        return 0
    base, attempt = split_attempt(name)
    return attempt if base == base_name else None


class BackendError(RuntimeError):
    """A request the workspace refused; the message is one actionable line."""


class ModelRefused(BackendError):
    """The model name/version is not registered, or holds a format the job refuses: no retry can change that."""


class JobAlreadyExists(BackendError):
    """Another submitter created a job of that name first (two runs of one month racing)."""


@dataclasses.dataclass(frozen=True)
class DataAsset:
    name: str
    version: str
    path: str  # azureml://datastores/<datastore>/paths/<prefix>/


@dataclasses.dataclass(frozen=True)
class ComputeSpec:
    name: str
    vm_size: str = "Standard_NC4as_T4_v3"
    min_instances: int = 0
    max_instances: int = 2
    tier: str = "low_priority"
    idle_time_before_scale_down: int = 120


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What the workspace holds under a model name and version, as far as the DAG must know before scoring."""

    name: str
    version: str
    format: str  # scoring.model_metadata.FORMATS
    file: str
    multi_label: bool = False
    labels: int | None = None  # how many the metadata names (None: class indices, known once loaded)

    def describe(self) -> str:
        labels = f"{self.labels} labels" if self.labels else "labels from the model's outputs"
        return f"model {self.name}:{self.version}: {self.format} ({self.file}), {labels}" + \
            (", multi-label" if self.multi_label else "")


def describe_model_file(name: str, version: str, found) -> ModelDescription:
    """A located model file (`scoring.model_format.locate`) as a description."""
    metadata = found.metadata
    return ModelDescription(name=name, version=version, format=found.format, file=found.path.name,
                            multi_label=metadata.multi_label, labels=len(metadata.labels) if metadata.labels else None)


@dataclasses.dataclass(frozen=True)
class ScoringJobSpec:
    """One month's scoring job, as both backends build it."""

    name: str
    experiment: str
    month: str
    data_asset_name: str
    data_asset_version: str
    model_name: str
    model_version: str
    compute: str
    settings: JobSettings
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class JobInfo:
    name: str
    status: str
    error: str | None = None
    url: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ScoringBackend(Protocol):
    def ensure_compute(self, spec: ComputeSpec) -> dict[str, Any]: ...

    def register_data_asset(self, asset: DataAsset) -> DataAsset: ...

    def describe_model(self, name: str, version: str) -> ModelDescription:
        """The registered model `name:version`; ModelRefused in one line when it is missing or refused."""
        ...

    def submit_job(self, spec: ScoringJobSpec) -> JobInfo: ...

    def get_job(self, name: str) -> JobInfo: ...

    def job_attempts(self, base_name: str) -> list[JobInfo]:
        """The jobs named `base_name`, `base_name-r1`, `base_name-r2`… that exist, in that order."""
        ...

    def cancel_job(self, name: str, *, wait: bool = True) -> JobInfo:
        """Cancel the job; with `wait=False` only send the request (the state may still be CancelRequested)."""
        ...

    def download_outputs(self, name: str, destination: Path) -> Path:
        """Fetch the merged `predictions.csv` and `errors.csv` of a completed job; returns their folder."""
        ...

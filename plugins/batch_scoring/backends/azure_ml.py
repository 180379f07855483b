"""The Azure ML backend: azure-ai-ml v2 on a real workspace.

The month's job is a pipeline of two steps: a parallel step (`parallel_run_function`)
running `scoring/entry.py` over the month's data asset with the job
settings (docs/contracts.md) and `append_row_to`, then a command step (`python -m scoring.merge`)
that turns the appended rows into `predictions.csv` and `errors.csv`, accounting
for every input. azure.ai.ml is imported only inside this module's methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import logging
import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from batch_scoring.backends.base import (
    FINISHED_STATUSES,
    BackendError,
    ComputeSpec,
    DataAsset,
    JobAlreadyExists,
    JobInfo,
    JobStatus,
    ModelDescription,
    ModelRefused,
    ScoringJobSpec,
    attempt_name,
    describe_model_file,
)
from scoring.job_settings import AUTO, PARALLEL, UNLIMITED, JobSettings, settings_fields
from scoring.merge import PREDICTIONS_FILE

log = logging.getLogger(__name__)
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _ConsoleToLog(io.TextIOBase):
    """Where the SDK's console prints go while it uploads: their words to the log, without terminal colour codes
    and blank lines (azure-ai-ml prints a colour reset to stderr after every upload, progress bars or not)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for line in _TERMINAL_CODES.sub("", text).splitlines():
            if line.strip():
                log.info("%s", line.strip())
        return len(text)


# Found by import, wherever it is installed (the clone, or the compose image where plugins live elsewhere).
SCORING_PACKAGE = Path(importlib.util.find_spec("scoring").origin).parent
# The job environment's one home: image and conda file (README, "The job environment").
ENVIRONMENT_FILE = SCORING_PACKAGE / "environment" / "environment.yml"
RESULTS_OUTPUT = "results"
# Where the scoring step appends its rows: a folder per step job in the workspace's default datastore, where the
# parallel runtime creates its one file of appended rows (azure-ai-ml: "one unique file which is created in the
# output location"); the merge reads every file in it, whatever the runtime names it.
ROWS_OUTPUT_PATH = "azureml://datastores/${{default_datastore}}/paths/${{name}}/rows/"


def stage_code(destination: Path) -> Path:
    """A code folder holding only the `scoring` package: what the job needs, nothing from the clone beside it."""
    shutil.copytree(SCORING_PACKAGE, destination / "scoring",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "environment"))
    return destination


def scoring_environment(reference: str | None = None):
    """A registered environment (`azureml:name:version`) when given, else `scoring/environment` built unnamed.

    Unnamed, the workspace keys the build by its content: a changed pin builds a new image, an unchanged one
    reuses the last build.
    """
    if reference:
        return reference
    from azure.ai.ml import load_environment
    from azure.ai.ml.entities import Environment

    declared = load_environment(ENVIRONMENT_FILE)
    return Environment(image=declared.image, conda_file=declared.conda_file)


# Azure's GPU VM families (NC, ND, NG, NV): what tells a GPU size when the size list is not at hand.
_GPU_VM_SIZE = re.compile(r"^Standard_N", re.IGNORECASE)
FALLBACK_WORKERS = 2


@dataclasses.dataclass(frozen=True)
class NodeSize:
    """What a compute's VM size offers per node (from the workspace's size list; unknowns are None)."""

    name: str | None
    cores: int | None = None
    gpus: int | None = None
    memory_gb: float | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus) if self.gpus is not None else bool(self.name and _GPU_VM_SIZE.match(self.name))


def for_compute(settings: JobSettings, node: NodeSize) -> JobSettings:
    """The job's settings for the cluster's nodes: `auto` workers become one per core, and `device=auto` on
    a GPU size becomes `cuda`, so a node without usable CUDA fails at init() instead of scoring on its CPU."""
    if node.has_gpu and settings.device == AUTO:
        settings = dataclasses.replace(settings, device="cuda")
    if not settings.max_concurrency_per_instance:
        settings = (settings.for_node(node.cores, node.memory_gb) if node.cores
                    else dataclasses.replace(settings, max_concurrency_per_instance=FALLBACK_WORKERS))
    return settings


def parallel_settings(settings: JobSettings) -> dict[str, Any]:
    """`parallel_run_function`'s keyword arguments for the parallel settings: its own names, nested as it wants.

    `error_threshold` is judged by the merge step, per file, as the local runner judges it: the service counts
    a mini-batch that fails for good as all of its files failed, so with 64 files per mini-batch one lost
    mini-batch would break a threshold of 50 and abort the step before the merge could list anything. The
    step itself gets -1; `mini_batch_error_threshold` still bounds failed mini-batches on the service."""
    values = {field.name: getattr(settings, field.name) for field in settings_fields(PARALLEL)}
    values["error_threshold"] = UNLIMITED
    values["retry_settings"] = {"max_retries": values.pop("max_retries"), "timeout": values.pop("timeout")}
    values["mini_batch_size"] = str(values["mini_batch_size"])
    return values


def build_pipeline_job(spec: ScoringJobSpec, *, code_dir: Path, environment: Any):
    """The month's pipeline job, built offline; `submit_job` sends it."""
    from azure.ai.ml import Input, Output, command, dsl
    from azure.ai.ml.constants import AssetTypes, InputOutputModes
    from azure.ai.ml.parallel import RunFunction, parallel_run_function

    settings = spec.settings
    score = parallel_run_function(
        name="score_images",
        display_name=f"score images {spec.month}",
        inputs={
            "images": Input(type=AssetTypes.URI_FOLDER, mode=InputOutputModes.RO_MOUNT),
            "model": Input(type=AssetTypes.CUSTOM_MODEL, mode=InputOutputModes.DOWNLOAD),
        },
        outputs={"rows": Output(type=AssetTypes.URI_FOLDER, mode=InputOutputModes.RW_MOUNT)},
        input_data="${{inputs.images}}",
        **parallel_settings(settings),
        task=RunFunction(
            code=str(code_dir),
            entry_script="scoring/entry.py",
            program_arguments=(
                f"--model_dir ${{{{inputs.model}}}} --input_root ${{{{inputs.images}}}} --month {spec.month} "
                + shlex.join(["--model_name", spec.model_name, "--model_version", spec.model_version,
                              *settings.program_arguments()])
            ),
            environment=environment,
            append_row_to="${{outputs.rows}}",
        ),
    )
    merge = command(
        name="merge_rows",
        display_name=f"merge rows {spec.month}",
        code=str(code_dir),
        command=(
            "python -m scoring.merge --rows ${{inputs.rows}} --input_root ${{inputs.images}} "
            f"--out ${{{{outputs.{RESULTS_OUTPUT}}}}} --error_threshold {settings.error_threshold}"
        ),
        inputs={
            "rows": Input(type=AssetTypes.URI_FOLDER, mode=InputOutputModes.RO_MOUNT),
            "images": Input(type=AssetTypes.URI_FOLDER, mode=InputOutputModes.RO_MOUNT),
        },
        # Upload mode: the merge writes to local disk and its renames stay local (a rename on a mounted blob
        # output can fail); the files are uploaded when the step ends.
        outputs={RESULTS_OUTPUT: Output(type=AssetTypes.URI_FOLDER, mode=InputOutputModes.UPLOAD)},
        environment=environment,
    )

    @dsl.pipeline(name="monthly_batch_scoring", description=f"Score images of {spec.month}", default_compute=spec.compute)
    def monthly_scoring(images, model):
        scored = score(images=images, model=model)
        scored.outputs.rows.path = ROWS_OUTPUT_PATH  # an explicit datastore path, as the append_row examples give
        merged = merge(rows=scored.outputs.rows, images=images)
        return {RESULTS_OUTPUT: merged.outputs[RESULTS_OUTPUT]}

    job = monthly_scoring(
        images=Input(type=AssetTypes.URI_FOLDER, path=f"azureml:{spec.data_asset_name}:{spec.data_asset_version}"),
        model=Input(type=AssetTypes.CUSTOM_MODEL, path=f"azureml:{spec.model_name}:{spec.model_version}"),
    )
    job.name = spec.name
    job.display_name = f"{spec.experiment} {spec.month}"
    job.experiment_name = spec.experiment
    job.tags = dict(spec.tags)
    # Never reuse a step's cached output: the data asset keeps its name:version while the month's blobs change,
    # and a resubmitted attempt must not get the failed one's results. Reuse is decided before submitting.
    job.settings.force_rerun = True
    return job


class AzureMLBackend:
    def __init__(self, ml_client, *, code_dir: str | None = None, environment: str | None = None):
        self.client = ml_client
        self._code_dir = code_dir
        self._environment = environment

    def ensure_compute(self, spec: ComputeSpec) -> dict[str, Any]:
        from azure.ai.ml.entities import AmlCompute
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = self.client.compute.get(spec.name)
        except ResourceNotFoundError:
            existing = None
        if existing is not None:
            if getattr(existing, "type", None) != "amlcompute":
                raise BackendError(
                    f"compute {spec.name!r} exists with type {existing.type!r}, not an AmlCompute cluster; "
                    "pick another compute name"
                )
            _check_provisioned(existing)
            return _compute_summary(existing)
        cluster = AmlCompute(
            name=spec.name, size=spec.vm_size, min_instances=spec.min_instances, max_instances=spec.max_instances,
            tier=spec.tier, idle_time_before_scale_down=spec.idle_time_before_scale_down,
        )
        created = self.client.compute.begin_create_or_update(cluster).result()
        _check_provisioned(created)
        return _compute_summary(created)

    def register_data_asset(self, asset: DataAsset) -> DataAsset:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = self.client.data.get(name=asset.name, version=asset.version)
        except ResourceNotFoundError:
            existing = None
        if existing is not None:
            if _same_path(existing.path, asset.path):
                return asset
            raise BackendError(
                f"data asset {asset.name}:{asset.version} is already registered with path {existing.path!r}, "
                f"not {asset.path!r}; versions are immutable, use another asset name"
            )
        self.client.data.create_or_update(
            Data(name=asset.name, version=asset.version, path=asset.path, type=AssetTypes.URI_FOLDER,
                 description=f"images of month {asset.version}")
        )
        return asset

    def describe_model(self, name: str, version: str) -> ModelDescription:
        """The registered model, downloaded to a scratch folder and read (never unpickled): a missing version or a
        format the job refuses fails the run before any compute is touched."""
        from azure.core.exceptions import ResourceNotFoundError

        from scoring.model_format import locate
        from scoring.model_metadata import ModelFolderError

        try:
            model = self.client.models.get(name=name, version=version)
        except ResourceNotFoundError:
            raise ModelRefused(f"model {name}:{version} is not registered in the workspace (Models): register it "
                               "with az ml model create, or fix the run's model_name/model_version") from None
        if _plain(getattr(model, "type", None)) not in ("custom_model", None):
            raise ModelRefused(f"model {name}:{version} is registered as {_plain(model.type)}, not custom_model: "
                               "register the model file or folder as a custom model")
        with tempfile.TemporaryDirectory(prefix="batch-scoring-model-") as scratch:
            self.client.models.download(name=name, version=version, download_path=scratch)
            # The SDK writes <download_path>/<name>/<the registered file or folder>.
            root = Path(scratch) / name
            entries = list(root.iterdir()) if root.is_dir() else []
            target = entries[0] if len(entries) == 1 else root
            try:
                return describe_model_file(name, version, locate(target))
            except ModelFolderError as error:
                raise ModelRefused(f"model {name}:{version}: {error}") from None

    def submit_job(self, spec: ScoringJobSpec) -> JobInfo:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        spec = dataclasses.replace(spec, settings=for_compute(spec.settings, self._node_size(spec.compute)))
        with tempfile.TemporaryDirectory(prefix="batch-scoring-code-") as scratch:
            code_dir = Path(self._code_dir) if self._code_dir else stage_code(Path(scratch))
            job = build_pipeline_job(spec, code_dir=code_dir, environment=scoring_environment(self._environment))
            try:
                with contextlib.redirect_stderr(_ConsoleToLog()):
                    created = self.client.jobs.create_or_update(job, experiment_name=spec.experiment)
            except HttpResponseError as refused:
                # A name taken by another submitter comes back as a 409 ResourceExistsError, and has been seen as
                # a plain 400: whatever the refusal, a job of that name that now exists means "reattach".
                try:
                    self.client.jobs.get(spec.name)
                except ResourceNotFoundError:
                    raise refused from None
                raise JobAlreadyExists(f"job {spec.name!r} already exists in the workspace") from None
        return _job_info(created)

    def _node_size(self, compute_name: str) -> NodeSize:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            name = getattr(self.client.compute.get(compute_name), "size", None)
        except ResourceNotFoundError:
            return NodeSize(None)
        try:
            sizes = {_size_field(size, "name", "name").lower(): size for size in self.client.compute.list_sizes()
                     if _size_field(size, "name", "name")}
        except HttpResponseError:
            sizes = {}
        size = sizes.get((name or "").lower())
        if size is None:
            return NodeSize(name)
        return NodeSize(name, cores=_size_field(size, "v_cp_us", "vCPUs"), gpus=_size_field(size, "gpus", "gpus"),
                        memory_gb=_size_field(size, "memory_gb", "memoryGB"))

    def get_job(self, name: str) -> JobInfo:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            job = self.client.jobs.get(name)
        except ResourceNotFoundError:
            raise BackendError(f"no job named {name!r} in the workspace") from None
        error = self._job_error(name) if job.status == JobStatus.FAILED else None
        info = _job_info(job, error)
        if info.status == JobStatus.QUEUED and (cluster := self._cluster_state(_job_compute(job))):
            info.details["cluster"] = cluster
        return info

    def _cluster_state(self, compute_name: str | None) -> str | None:
        """A queued job's cluster as the service reports its node allocation: state, nodes, and the allocation
        errors (missing quota, no low-priority capacity), which the SDK's AmlCompute entity drops, so they are
        read from the REST object."""
        if not compute_name:
            return None
        try:
            rest = self.client.compute._operation.get(self.client.resource_group_name, self.client.workspace_name,
                                                      compute_name)
            aml = getattr(getattr(rest, "properties", None), "properties", None)
        except Exception:  # noqa: BLE001 - the cluster's state is a courtesy in a warning
            return None
        if aml is None:
            return None
        parts = [f"{compute_name} allocation {_plain(getattr(aml, 'allocation_state', None)) or 'unknown'}, "
                 f"{getattr(aml, 'current_node_count', None) or 0} of {getattr(aml, 'target_node_count', None) or 0}"
                 " target nodes"]
        for each in getattr(aml, "errors", None) or []:
            if (detail := getattr(each, "error", None)) is not None:
                parts.append(_error_line(detail))
        return "; ".join(parts)[:600]

    def job_attempts(self, base_name: str) -> list[JobInfo]:
        """`base`, `base-r1`, `base-r2`… as far as they exist: probing names beats listing a workspace's jobs."""
        from azure.core.exceptions import ResourceNotFoundError

        found = []
        for attempt in range(0, 100):
            name = attempt_name(base_name, attempt)
            try:
                found.append(_job_info(self.client.jobs.get(name)))
            except ResourceNotFoundError:
                break
        return found

    def cancel_job(self, name: str, *, wait: bool = True) -> JobInfo:
        info = self.get_job(name)
        if info.status in FINISHED_STATUSES:
            return info
        poller = self.client.jobs.begin_cancel(name)
        if not wait:
            return dataclasses.replace(info, status=JobStatus.CANCEL_REQUESTED)
        poller.result()
        return self.get_job(name)

    def download_outputs(self, name: str, destination: Path) -> Path:
        info = self.get_job(name)
        if info.status != JobStatus.COMPLETED:
            raise BackendError(f"job {name!r} is {info.status}, not Completed: it has no outputs to download")
        self.client.jobs.download(name, download_path=str(destination), output_name=RESULTS_OUTPUT)
        folder = destination / "named-outputs" / RESULTS_OUTPUT
        if not (folder / PREDICTIONS_FILE).is_file():
            raise BackendError(f"job {name!r} output {RESULTS_OUTPUT!r} has no {PREDICTIONS_FILE} (looked in {folder})")
        return folder

    def _job_error(self, name: str) -> str | None:
        """The failed pipeline's reason: its failed step's own error (the pipeline's usually only names the
        step), with the step named; the pipeline's when no step says more."""
        try:
            children = list(self.client.jobs.list(parent_job_name=name))
        except Exception:  # noqa: BLE001 - the error text is a courtesy; the status is what counts
            children = []
        for child in children:
            if getattr(child, "status", None) == JobStatus.FAILED and (reason := self._run_error(child.name)):
                return f"step {getattr(child, 'display_name', None) or child.name} failed: {reason}"
        return self._run_error(name)

    def _run_error(self, name: str) -> str | None:
        # The SDK's public Job entity carries no error; its run details do (as `jobs.stream` reads them).
        try:
            details = self.client.jobs._runs_operations.get_run_details(name)
            error = details.error.error if details.error else None
            return _error_line(error) if error else None
        except Exception:  # noqa: BLE001 - the error text is a courtesy; the status is what counts
            return None


_DATASTORE_PART = re.compile(r"datastores/([^/]+)/paths/(.*?)/*$")


def _same_path(registered: str, wanted: str) -> bool:
    """The service answers with the long `azureml://subscriptions/…/datastores/…` form: compare what matters."""
    a, b = _DATASTORE_PART.search(registered), _DATASTORE_PART.search(wanted)
    if a and b:
        return a.groups() == b.groups()
    return registered.rstrip("/") == wanted.rstrip("/")


def _plain(value):
    """The SDK hands states back as enums (`JobStatus.FAILED`): logs and messages want the service's word."""
    return getattr(value, "value", value)


def _size_field(size, attribute: str, rest_name: str):
    # azure-ai-ml 1.35's VmSize copies the REST model's dict, keyed by REST names ("vCPUs", "memoryGB"), so
    # its documented attributes stay None when the size list comes from the service.
    value = getattr(size, attribute, None)
    return value if value is not None else vars(size).get(rest_name)


def _check_provisioned(compute) -> None:
    """A cluster whose provisioning failed (a VM size not offered in the region, a subnet) takes no job: say so
    now, in one line with the service's reason, rather than let a job sit Queued for a day. Missing quota does
    not show here: a cluster of 0 minimum nodes provisions `Succeeded` and its jobs wait Queued (the wait
    task reports them)."""
    state = _plain(getattr(compute, "provisioning_state", None))
    if state and state.lower() in ("failed", "canceled", "deleting"):
        errors = " ".join(str(getattr(compute, "provisioning_errors", None) or "no reason given").split())[:400]
        raise BackendError(f"compute {compute.name!r} is in provisioning state {state}: {errors}; fix or delete "
                           "the cluster in the Studio (Compute), or pick another compute name")


def _compute_summary(compute) -> dict[str, Any]:
    return {"name": compute.name, "type": compute.type, "size": getattr(compute, "size", None),
            "min_instances": getattr(compute, "min_instances", None),
            "max_instances": getattr(compute, "max_instances", None), "tier": getattr(compute, "tier", None),
            "provisioning_state": _plain(getattr(compute, "provisioning_state", None))}


def _error_line(error) -> str:
    """A service error (code and message, as run details and compute allocation errors carry them) on one line."""
    return " ".join(f"{getattr(error, 'code', None)}: {getattr(error, 'message', None)}".split())


def _job_compute(job) -> str | None:
    """The compute a pipeline job runs on (its default compute, an ARM id or a name), by name."""
    compute = getattr(job, "compute", None) or getattr(getattr(job, "settings", None), "default_compute", None)
    return str(compute).rstrip("/").rsplit("/", 1)[-1] if compute else None


def _job_info(job, error: str | None = None) -> JobInfo:
    return JobInfo(name=job.name, status=_plain(job.status) or JobStatus.NOT_STARTED, error=error, url=job.studio_url,
                   tags=dict(getattr(job, "tags", None) or {}))

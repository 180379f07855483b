"""The embedded default's backend: a local workspace folder, Azurite for data, local job processes.

Datastores map to containers of the blob store behind the `wasb` connection
(datastore `images` is container `images`); compute is this machine's worker
pool; the model registry is `<workspace>/models/<name>/<version>/`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path
from typing import Any

from localml import jobs
from localml.workspace import LocalWorkspace, WorkspaceError, read_json
from scoring.atomic_write import write_json
from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE
from scoring.progress import PROGRESS_FILE

from batch_scoring.backends.base import (
    BackendError,
    ComputeSpec,
    DataAsset,
    JobAlreadyExists,
    JobInfo,
    JobStatus,
    ModelDescription,
    ModelRefused,
    ScoringJobSpec,
    attempt_number,
    describe_model_file,
)

# How long a job's read-only signature of its month's container is valid: the wait's default deadline.
JOB_CREDENTIAL_LIFETIME = dt.timedelta(hours=24)
_DATASTORE_PATH = re.compile(r"^azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<prefix>.+)$")
LOCAL_COMPUTE_TYPE = "local_worker_pool"


def parse_datastore_path(path: str) -> tuple[str, str]:
    match = _DATASTORE_PATH.match(path)
    if not match:
        raise BackendError(f"data asset path {path!r} is not of the form azureml://datastores/<name>/paths/<folder>/")
    prefix = match["prefix"] if match["prefix"].endswith("/") else match["prefix"] + "/"
    return match["datastore"], prefix


class LocalBackend:
    def __init__(self, workspace_dir: str | os.PathLike, storage_connection_string: str, *,
                 job_page_url: str | None = None):
        self.workspace = LocalWorkspace(workspace_dir)
        self._storage_connection_string = storage_connection_string
        self._job_page_url = job_page_url.rstrip("/") if job_page_url else None

    def job_url(self, name: str) -> str:
        """The job's page over http when the Airflow API server serves them, else its log file."""
        if self._job_page_url:
            return f"{self._job_page_url}/{name}"
        return self.job_log(name).as_uri()

    def job_log(self, name: str) -> Path:
        return self.workspace.job_dir(name) / jobs.LOG_FILE

    def ensure_compute(self, spec: ComputeSpec) -> dict[str, Any]:
        path = self.workspace.compute_file(spec.name)
        existing = read_json(path)
        if existing is not None:
            if existing.get("type") != LOCAL_COMPUTE_TYPE:
                raise BackendError(
                    f"compute {spec.name!r} exists with type {existing.get('type')!r}, not {LOCAL_COMPUTE_TYPE!r}; "
                    "pick another compute name"
                )
            return existing
        compute = {"name": spec.name, "type": LOCAL_COMPUTE_TYPE, "cpus": os.cpu_count(),
                   "max_instances": spec.max_instances}
        write_json(path, compute)
        return compute

    def register_data_asset(self, asset: DataAsset) -> DataAsset:
        parse_datastore_path(asset.path)
        path = self.workspace.data_asset_file(asset.name, asset.version)
        existing = read_json(path)
        if existing is not None:
            if existing["path"] != asset.path:
                raise BackendError(
                    f"data asset {asset.name}:{asset.version} is already registered with path {existing['path']!r}, "
                    f"not {asset.path!r}; versions are immutable, use another asset name"
                )
            return asset
        write_json(path, {"name": asset.name, "version": asset.version, "path": asset.path, "type": "uri_folder"})
        return asset

    def describe_model(self, name: str, version: str) -> ModelDescription:
        from localml.models import registered_model
        from scoring.model_metadata import ModelFolderError

        try:
            return describe_model_file(name, version, registered_model(self.workspace, name, version))
        except (ModelFolderError, WorkspaceError) as error:
            raise ModelRefused(str(error)) from None

    def submit_job(self, spec: ScoringJobSpec) -> JobInfo:
        registered = read_json(self.workspace.data_asset_file(spec.data_asset_name, spec.data_asset_version))
        if registered is None:
            raise BackendError(f"data asset {spec.data_asset_name}:{spec.data_asset_version} is not registered")
        if read_json(self.workspace.compute_file(spec.compute)) is None:
            raise BackendError(f"compute {spec.compute!r} does not exist; run the ensure-compute step first")
        self.describe_model(spec.model_name, spec.model_version)  # registered, in a format the job loads
        model_dir = self.workspace.model_dir(spec.model_name, spec.model_version)
        container, prefix = parse_datastore_path(registered["path"])
        job_spec = {
            "month": spec.month,
            "experiment": spec.experiment,
            "input": {"container": container, "prefix": prefix},
            "code_root": str(jobs.PROJECT_ROOT),
            "entry_script": "scoring/entry.py",
            "model_dir": str(model_dir),
            "month_dir": str(self.workspace.month_dir(container, prefix)),
            # The job process copies the model into its own folder once and points --model_dir at the copy.
            "program_arguments": ["--model_name", spec.model_name, "--model_version", spec.model_version,
                                  "--month", spec.month, *spec.settings.program_arguments()],
            "settings": spec.settings.to_dict(),
            "compute": spec.compute,
            "model": {"name": spec.model_name, "version": spec.model_version},
            "data_asset": {"name": spec.data_asset_name, "version": spec.data_asset_version},
            "tags": dict(spec.tags),
        }
        from scoring.blob_inputs import read_only_container_url

        # The job gets what it needs and nothing more: read and list on its month's container, for a day.
        credential = read_only_container_url(self._storage_connection_string, container,
                                             lifetime=JOB_CREDENTIAL_LIFETIME)
        try:
            status = jobs.submit(self.workspace, spec.name, job_spec, env={jobs.STORAGE_ENV: credential})
        except jobs.JobExists as error:
            raise JobAlreadyExists(str(error)) from None
        except WorkspaceError as error:
            raise BackendError(str(error)) from None
        return self._info(spec.name, status)

    def get_job(self, name: str) -> JobInfo:
        try:
            return self._info(name, jobs.get(self.workspace, name))
        except WorkspaceError as error:
            raise BackendError(str(error)) from None

    def job_attempts(self, base_name: str) -> list[JobInfo]:
        numbered = {attempt_number(name, base_name): name for name in self.workspace.jobs_named(base_name)}
        return [self.get_job(numbered[n]) for n in sorted(n for n in numbered if n is not None)]

    def cancel_job(self, name: str, *, wait: bool = True) -> JobInfo:
        return self._info(name, jobs.cancel(self.workspace, name, wait=wait))

    def download_outputs(self, name: str, destination: Path) -> Path:
        info = self.get_job(name)
        if info.status != JobStatus.COMPLETED:
            raise BackendError(f"job {name!r} is {info.status}, not Completed: it has no outputs to download")
        destination.mkdir(parents=True, exist_ok=True)
        for file_name in (PREDICTIONS_FILE, ERRORS_FILE):
            shutil.copyfile(self.workspace.job_dir(name) / jobs.OUTPUTS_DIR / file_name, destination / file_name)
        return destination

    def _info(self, name: str, status: dict) -> JobInfo:
        job_dir = self.workspace.job_dir(name)
        details = {key: status[key] for key in ("counts", "submitted_at", "started_at", "finished_at") if key in status}
        progress = read_json(job_dir / PROGRESS_FILE)
        if progress:
            details["progress"] = progress
        spec = read_json(job_dir / jobs.SPEC_FILE) or {}
        return JobInfo(name=name, status=status["status"], error=status.get("error"),
                       url=self.job_url(name), details=details, tags=spec.get("tags", {}))

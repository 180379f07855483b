"""An in-memory stand-in for the parts of azure.ai.ml's MLClient the backend uses (the cloud is out of reach).

It keeps the SDK's shapes: `jobs.get` raises ResourceNotFoundError for unknown
names, `begin_*` return pollers, job states are Azure ML's strings. Tests move
jobs between states with `set_status`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError


class _Poller:
    def __init__(self, result=None, on_result=None):
        self._result, self._on_result = result, on_result

    def result(self):
        if self._on_result:
            self._on_result()
        return self._result


@dataclasses.dataclass
class FakeJob:
    name: str
    status: str = "NotStarted"
    studio_url: str = ""
    submitted: object = None
    error: str | None = None
    tags: dict = dataclasses.field(default_factory=dict)
    display_name: str | None = None


class _Jobs:
    def __init__(self):
        self.jobs: dict[str, FakeJob] = {}
        self.created: list[str] = []
        self.cancelled: list[str] = []
        self.cancel_requested: list[str] = []  # begin_cancel called; `cancelled` once its poller's result() is
        self.outputs: dict[str, dict[str, str]] = {}
        # Reads a cancelled job stays CancelRequested after its cancel answered (the service promises no time).
        self.cancel_lingers = 0
        self.children: dict[str, list[FakeJob]] = {}  # a pipeline's step jobs, by the pipeline's name
        self._ending: dict[str, int] = {}
        self._runs_operations = SimpleNamespace(get_run_details=self._run_details)

    def create_or_update(self, job, experiment_name=None):
        if job.name in self.jobs:
            raise ResourceExistsError(f"job {job.name} already exists")
        self.jobs[job.name] = FakeJob(job.name, "NotStarted", f"https://ml.azure.com/runs/{job.name}", job,
                                      tags=dict(job.tags or {}))
        self.created.append(job.name)
        return self.jobs[job.name]

    def get(self, name):
        if name not in self.jobs:
            raise ResourceNotFoundError(f"job {name} not found")
        if name in self._ending:
            self._ending[name] -= 1
            if self._ending[name] < 0:
                del self._ending[name]
                self.jobs[name].status = "Canceled"
        return self.jobs[name]

    def list(self, parent_job_name=None, **_kwargs):
        return iter(self.children.get(parent_job_name, []))

    def add_step(self, pipeline, name, status, error=None, display_name=None):
        step = FakeJob(name, status, error=error, display_name=display_name)
        self.jobs[name] = step
        self.children.setdefault(pipeline, []).append(step)

    def begin_cancel(self, name):
        self.cancel_requested.append(name)

        def cancel():
            self.cancelled.append(name)
            if self.cancel_lingers:
                self.jobs[name].status = "CancelRequested"
                self._ending[name] = self.cancel_lingers
            else:
                self.jobs[name].status = "Canceled"
        return _Poller(on_result=cancel)

    def download(self, name, *, download_path, output_name=None, all=False):
        folder = Path(download_path) / "named-outputs" / output_name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, text in self.outputs.get(name, {}).items():
            (folder / file_name).write_text(text, encoding="utf-8")

    def _run_details(self, name):
        error = self.jobs[name].error
        inner = SimpleNamespace(code="UserError", message=error) if error else None
        return SimpleNamespace(error=SimpleNamespace(error=inner) if inner else None)

    def set_status(self, name, status, error=None):
        self.jobs[name].status, self.jobs[name].error = status, error


class _Data:
    def __init__(self):
        self.assets: dict[tuple[str, str], object] = {}

    def get(self, name, version):
        if (name, version) not in self.assets:
            raise ResourceNotFoundError(f"data {name}:{version} not found")
        return self.assets[(name, version)]

    def create_or_update(self, data):
        # The service answers with the long form of a datastore path.
        long_path = data.path.replace("azureml://", "azureml://subscriptions/s/resourcegroups/r/workspaces/w/")
        self.assets[(data.name, data.version)] = SimpleNamespace(name=data.name, version=data.version, path=long_path)
        return self.assets[(data.name, data.version)]


class _Compute:
    def __init__(self):
        self.computes: dict[str, object] = {}

    def get(self, name):
        if name not in self.computes:
            raise ResourceNotFoundError(f"compute {name} not found")
        return self.computes[name]

    def begin_create_or_update(self, compute):
        self.computes[compute.name] = compute
        return _Poller(result=compute)

    def list_sizes(self, *, location=None, compute_type=None):
        from azure.ai.ml.entities import VmSize

        return [VmSize(name="Standard_NC4as_T4_v3", v_cp_us=4, gpus=1, memory_gb=28.0),
                VmSize(name="Standard_D16s_v3", v_cp_us=16, gpus=0, memory_gb=64.0),
                VmSize(name="Standard_F2s_v2", v_cp_us=2, gpus=0, memory_gb=4.0)]


class FakeMLClient:
    def __init__(self):
        self.jobs, self.data, self.compute = _Jobs(), _Data(), _Compute()

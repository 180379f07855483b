"""Operators for the month's Azure ML work: compute, data asset, scoring job submit and wait.

Each reaches the workspace through the verbs of `AzureMLHook`, so the same DAG runs
on a real workspace or on the embedded default.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.execution_time.xcom import XCom

from batch_scoring.attempts import (
    INPUTS_TAG,
    MODEL_TAG,
    RUN_TAG,
    AttemptConflict,
    ensure_job,
    spec_from_dict,
    spec_to_dict,
)
from batch_scoring.backends.base import FAILURE_STATES, ComputeSpec, DataAsset, ModelRefused, ScoringJobSpec
from batch_scoring.hooks.azure_ml import AzureMLHook
from batch_scoring.month import validate_month
from batch_scoring.job_watch import (
    CANCEL_REQUEST,
    QUEUED_WARNING_S,
    RESUME_DWELL_S,
    STALLED_TIMEOUT_S,
    JobWatch,
    job_event,
)
from batch_scoring.triggers.azure_ml import AzureMLJobTrigger
from scoring.job_settings import JobSettings

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

JOB_URL_KEY = "job_url"
JOB_SPEC_KEY = "job_spec"


class AzureMLJobFailed(AirflowException):
    """The job ended Failed or Canceled; the message carries the job's own error and its link."""


class AzureMLStudioLink(BaseOperatorLink):
    """'Azure ML Studio' on the task: the job's Studio page; on the embedded default, its page served by the plugin."""

    name = "Azure ML Studio"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=JOB_URL_KEY, ti_key=ti_key) or ""


class _AzureMLOperator(BaseOperator):
    def __init__(self, *, azure_ml_conn_id: str = AzureMLHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.azure_ml_conn_id = azure_ml_conn_id

    @cached_property
    def hook(self) -> AzureMLHook:
        return AzureMLHook(azure_ml_conn_id=self.azure_ml_conn_id)

    def _ensure_job(self, wanted: ScoringJobSpec):
        """The attempt policy's job for `wanted`; a live attempt of another model fails the task in one line."""
        try:
            return ensure_job(self.hook, wanted, self.log)
        except AttemptConflict as error:
            raise AzureMLJobFailed(str(error)) from None


class AzureMLCheckModelOperator(_AzureMLOperator):
    """Check that the registered model exists in a format the job loads, before any compute or job is touched.

    Fails at once, without retries, in one line when the model name or version is not registered, is a whole
    pickled model (the job never unpickles code), or has fewer classes than `top_k` asks for. Returns the
    model's description (format, file, labels, multi-label), which the publish step's validation uses.

    :param model_name: registered model name.
    :param model_version: registered model version.
    :param top_k: classes per image the run asks for (a model with fewer named classes is refused).
    """

    template_fields: Sequence[str] = ("model_name", "model_version", "top_k")

    def __init__(self, *, model_name: str, model_version: str, top_k: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.model_name = model_name
        self.model_version = model_version
        self.top_k = top_k

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            model = self.hook.describe_model(str(self.model_name), str(self.model_version))
        except ModelRefused as error:
            raise AirflowFailException(str(error)) from None  # retrying cannot register a model
        if model.labels is not None and int(self.top_k) > model.labels:
            raise AirflowFailException(f"top_k={self.top_k} but model {model.name}:{model.version} has "
                                       f"{model.labels} classes")
        self.log.info("%s", model.describe())
        return dataclasses.asdict(model)


class AzureMLEnsureComputeOperator(_AzureMLOperator):
    """Create the AmlCompute cluster if it is missing and wait for it; reuse an existing one as is.

    :param compute_name: cluster name.
    :param vm_size: VM size of a node, e.g. Standard_NC4as_T4_v3.
    :param min_instances: nodes kept when idle (0: scale to zero, no cost when idle).
    :param max_instances: nodes at most.
    :param tier: `low_priority` (cheap, preemptible) or `dedicated`.
    :param idle_time_before_scale_down: seconds a node idles before it is released.
    """

    template_fields: Sequence[str] = ("compute_name", "vm_size", "min_instances", "max_instances", "tier")

    def __init__(self, *, compute_name: str, vm_size: str = "Standard_NC4as_T4_v3", min_instances: int = 0,
                 max_instances: int = 2, tier: str = "low_priority", idle_time_before_scale_down: int = 120,
                 **kwargs):
        super().__init__(**kwargs)
        self.compute_name = compute_name
        self.vm_size = vm_size
        self.min_instances = min_instances
        self.max_instances = max_instances
        self.tier = tier
        self.idle_time_before_scale_down = idle_time_before_scale_down

    def execute(self, context: Context) -> dict[str, Any]:
        spec = ComputeSpec(
            name=self.compute_name, vm_size=self.vm_size, min_instances=int(self.min_instances),
            max_instances=int(self.max_instances), tier=self.tier,
            idle_time_before_scale_down=self.idle_time_before_scale_down,
        )
        compute = self.hook.ensure_compute(spec)
        self.log.info("compute %s ready: %s", self.compute_name, compute)
        return compute


class AzureMLRegisterDataAssetOperator(_AzureMLOperator):
    """Register the month folder as a `uri_folder` data asset; the same month again is a no-op.

    :param name: data asset name.
    :param version: data asset version: the month, YYYYMM.
    :param path: `azureml://datastores/<datastore>/paths/<YYYYMM>/`.
    """

    template_fields: Sequence[str] = ("name", "version", "path")

    def __init__(self, *, name: str, version: str, path: str, **kwargs):
        super().__init__(**kwargs)
        self.name = name
        self.version = version
        self.path = path

    def execute(self, context: Context) -> dict[str, str]:
        asset = self.hook.register_data_asset(DataAsset(self.name, str(self.version), self.path))
        self.log.info("data asset %s:%s -> %s", asset.name, asset.version, asset.path)
        return {"name": asset.name, "version": asset.version, "path": asset.path}


class AzureMLSubmitScoringJobOperator(_AzureMLOperator):
    """Submit the month's scoring pipeline, or reattach to it: never two live jobs for one month.

    The job name is deterministic (`job_name`); the attempt policy (`batch_scoring.attempts`)
    reattaches to a live attempt, returns one that completed with the same model over the same
    inputs, or submits the next (`-r1`, `-r2`…). The job it wants is pushed to XCom (`job_spec`)
    so that the wait task can submit the next attempt when a retry finds this one failed.

    :param job_name: base job name, unique per (DAG, month).
    :param month: YYYYMM.
    :param data_asset_name: registered data asset holding the month.
    :param data_asset_version: its version (the month).
    :param model_name: registered model name.
    :param model_version: registered model version.
    :param compute_name: compute target.
    :param job_settings: job settings and scoring profile (scoring.job_settings; docs/contracts.md).
    :param inputs_fingerprint: digest of the month's blob names and ETags; a completed job is reused
        only for the same one.
    :param experiment_name: experiment the job is filed under.
    """

    template_fields: Sequence[str] = (
        "job_name", "month", "data_asset_name", "data_asset_version", "model_name", "model_version",
        "compute_name", "job_settings", "inputs_fingerprint", "experiment_name",
    )
    template_fields_renderers = {"job_settings": "json"}
    operator_extra_links = (AzureMLStudioLink(),)

    def __init__(self, *, job_name: str, month: str, data_asset_name: str, data_asset_version: str,
                 model_name: str, model_version: str, compute_name: str,
                 job_settings: dict[str, Any] | None = None, inputs_fingerprint: str | None = None,
                 experiment_name: str = "monthly-batch-scoring", **kwargs):
        super().__init__(**kwargs)
        self.job_name = job_name
        self.month = month
        self.data_asset_name = data_asset_name
        self.data_asset_version = data_asset_version
        self.model_name = model_name
        self.model_version = model_version
        self.compute_name = compute_name
        self.job_settings = job_settings or {}
        self.inputs_fingerprint = inputs_fingerprint
        self.experiment_name = experiment_name

    def execute(self, context: Context) -> str:
        month = validate_month(self.month)
        tags = {"month": month, "dag_id": context["dag"].dag_id, MODEL_TAG: f"{self.model_name}:{self.model_version}",
                RUN_TAG: str(context.get("run_id") or "")}
        if self.inputs_fingerprint:
            tags[INPUTS_TAG] = str(self.inputs_fingerprint)
        wanted = ScoringJobSpec(
            name=sanitize_job_name(self.job_name), experiment=self.experiment_name, month=month,
            data_asset_name=self.data_asset_name, data_asset_version=str(self.data_asset_version),
            model_name=self.model_name, model_version=str(self.model_version), compute=self.compute_name,
            settings=JobSettings.from_dict(self.job_settings), tags=tags,
        )
        job = self._ensure_job(wanted)
        context["ti"].xcom_push(key=JOB_SPEC_KEY, value=spec_to_dict(wanted))
        _push_job(context, job)
        self.log.info("job link: %s", job.url)
        return job.name


class AzureMLWaitForJobOperator(_AzureMLOperator):
    """Wait for a job to end; deferrable. Completed succeeds; Failed/Canceled raise with the job's error.

    A retry (or a clear) of this task that finds the job ended Failed or Canceled submits the
    next attempt through the same attempt policy as the submit task, then waits on that one:
    an Airflow retry retries the month. On timeout, and when the task is killed, the job is
    cancelled, unless another run submitted it (that run still waits on it).

    :param job_name: the job to wait for.
    :param job_spec: the job the run wants (the submit task's `job_spec` XCom), for resubmitting.
    :param poll_interval: the most seconds between status checks (fewer while the job is young).
    :param timeout: seconds to wait before cancelling the job and failing.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param queued_warning_s: report a job Queued longer than this (quota, preemption) at each poll.
    :param stalled_timeout_s: cancel and fail a job Paused or Unknown longer than this.
    """

    template_fields: Sequence[str] = ("job_name", "job_spec", "poll_interval", "timeout", "queued_warning_s",
                                      "stalled_timeout_s")
    template_fields_renderers = {"job_spec": "json"}
    operator_extra_links = (AzureMLStudioLink(),)

    def __init__(self, *, job_name: str, job_spec: dict[str, Any] | None = None, poll_interval: float = 30.0,
                 timeout: float = 24 * 3600,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 queued_warning_s: float = QUEUED_WARNING_S, stalled_timeout_s: float = STALLED_TIMEOUT_S, **kwargs):
        super().__init__(**kwargs)
        self.queued_warning_s = queued_warning_s
        self.stalled_timeout_s = stalled_timeout_s
        self.job_name = job_name
        self.job_spec = job_spec
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self._owns_job = True

    def execute(self, context: Context) -> dict[str, Any] | None:
        self.poll_interval, self.timeout = float(self.poll_interval), float(self.timeout)
        self.queued_warning_s, self.stalled_timeout_s = float(self.queued_warning_s), float(self.stalled_timeout_s)
        info = self.hook.get_job(self.job_name)
        if info.status in FAILURE_STATES and self.job_spec and _is_rerun(context):
            self.log.warning("job %s ended %s%s; this try submits the next attempt", info.name, info.status,
                             f" ({info.error})" if info.error else "")
            info = self._ensure_job(spec_from_dict(self.job_spec))
            self.job_name = info.name
        _push_job(context, info)
        submitted_by = info.tags.get(RUN_TAG)
        self._owns_job = not submitted_by or submitted_by == str(context.get("run_id") or "")
        end_time = time.time() + self.timeout
        if info.terminal:
            return self._finish(job_event(info))
        if self.deferrable:
            self.defer(
                trigger=AzureMLJobTrigger(job_name=self.job_name, azure_ml_conn_id=self.azure_ml_conn_id,
                                          end_time=end_time, poll_interval=self.poll_interval,
                                          cancel_on_kill=self._owns_job, resume_after=time.time() + RESUME_DWELL_S,
                                          queued_warning_s=self.queued_warning_s,
                                          stalled_timeout_s=self.stalled_timeout_s),
                method_name="execute_complete",
            )
        watch = JobWatch(self.job_name, end_time=end_time, poll_interval=self.poll_interval,
                         started=time.monotonic(), queued_warning_s=self.queued_warning_s,
                         stalled_timeout_s=self.stalled_timeout_s)
        while True:
            verdict = watch.after(info, now=time.time(), monotonic=time.monotonic())
            if verdict.cancel:
                self.hook.cancel_job(self.job_name, wait=verdict.cancel != CANCEL_REQUEST)
            if verdict.event is not None:
                return self._finish(verdict.event)
            if verdict.warning:
                self.log.warning("%s", verdict.warning)
            self.log.info("%s", verdict.line)
            time.sleep(verdict.pause_s)
            info = self.hook.get_job(self.job_name)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._finish(event)

    def _finish(self, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "success":
            raise AzureMLJobFailed(f"{event['message']} ({event.get('url') or 'no link'})")
        self.log.info("%s", event["message"])
        return event

    def on_kill(self) -> None:
        if not self._owns_job:
            self.log.info("task killed: job %s was submitted by another run, which still waits on it; left running",
                          self.job_name)
            return
        self.log.info("task killed: cancelling job %s", self.job_name)
        self.hook.cancel_job(self.job_name)


def _push_job(context: Context, job) -> None:
    context["ti"].xcom_push(key=JOB_URL_KEY, value=job.url)  # what the Studio link reads


def _is_rerun(context: Context) -> bool:
    """A retry or a clear: the try that failed has told the run already; this one acts on it."""
    return int(getattr(context["ti"], "try_number", 1) or 1) > 1


_JOB_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize_job_name(name: str) -> str:
    """Azure ML job names: letters, digits, '-' and '_'."""
    cleaned = _JOB_NAME_CHARS.sub("-", name).strip("-_")
    if not cleaned:
        raise ValueError(f"job name {name!r} has no usable characters")
    return cleaned[:200]

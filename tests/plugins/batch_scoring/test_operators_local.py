"""The same operator behaviours against the local backend for real: job processes started, killed, reattached."""

import os
import shutil
import signal
import time

import pytest

from batch_scoring.backends.base import BackendError
from batch_scoring.backends.local import LocalBackend
from batch_scoring.operators.azure_ml import (
    AzureMLEnsureComputeOperator,
    AzureMLJobFailed,
    AzureMLRegisterDataAssetOperator,
    AzureMLSubmitScoringJobOperator,
    AzureMLWaitForJobOperator,
)
from localml import jobs
from localml.workspace import read_json
from operator_support import context, with_backend
from support import image_bytes

MONTH = "202609"
BASE = f"local-test-{MONTH}"


@pytest.fixture
def backend(tmp_path, azurite, blob_service, model_dir):
    container = blob_service.get_container_client("locimages")
    if not container.exists():
        container.create_container()
    for index in range(6):
        container.upload_blob(f"{MONTH}/img{index}.jpg", image_bytes("JPEG"), overwrite=True)
    workspace = tmp_path / "workspace"
    shutil.copytree(model_dir, workspace / "models" / "shapes-classifier" / "1")
    backend = LocalBackend(workspace, azurite.connection_string)
    with_backend(AzureMLRegisterDataAssetOperator(
        task_id="register", name="monthly-images", version=MONTH,
        path=f"azureml://datastores/locimages/paths/{MONTH}/"), backend).execute(context())
    with_backend(AzureMLEnsureComputeOperator(task_id="compute", compute_name="local-pool"), backend).execute(context())
    yield backend
    for name in backend.workspace.jobs_named(BASE):
        backend.cancel_job(name)


def _submit(backend, month=MONTH, base=BASE):
    return with_backend(AzureMLSubmitScoringJobOperator(
        task_id="submit", job_name=base, month=month, data_asset_name="monthly-images", data_asset_version=month,
        model_name="shapes-classifier", model_version="1", compute_name="local-pool",
        job_settings={"mini_batch_size": 2, "max_concurrency_per_instance": 1},
    ), backend).execute(context())


def _wait(backend, name, **kwargs):
    return with_backend(AzureMLWaitForJobOperator(task_id="wait", job_name=name, poll_interval=0.2,
                                                  deferrable=False, **kwargs), backend)


def _kill(backend, name):
    process = None
    deadline = time.monotonic() + 30
    while process is None and time.monotonic() < deadline:
        process = read_json(backend.workspace.job_dir(name) / jobs.PROCESS_FILE)
        time.sleep(0.05)
    os.killpg(process["pid"], signal.SIGKILL)


def test_submit_reattach_wait_and_no_second_job(backend):
    assert _submit(backend) == BASE
    assert _submit(backend) == BASE  # still running: reattached
    assert _wait(backend, BASE).execute(context())["job_status"] == "Completed"
    assert _submit(backend) == BASE  # completed: nothing submitted
    assert backend.workspace.jobs_named(BASE) == [BASE]
    assert backend.get_job(BASE).details["counts"] == {"inputs": 6, "scored": 6, "errors": 0}


def test_a_killed_job_fails_the_wait_and_the_retry_resubmits(backend):
    _submit(backend)
    _kill(backend, BASE)
    with pytest.raises(AzureMLJobFailed, match="ended without a final state"):
        _wait(backend, BASE).execute(context())
    assert _submit(backend) == f"{BASE}-r1"
    assert _wait(backend, f"{BASE}-r1").execute(context())["status"] == "success"
    assert backend.get_job(f"{BASE}-r1").details["counts"] == {"inputs": 6, "scored": 6, "errors": 0}


def test_the_resubmitted_attempt_keeps_what_the_killed_one_finished(backend, blob_service):
    month, base = "202608", "local-test-202608"
    container = blob_service.get_container_client("locimages")
    for index in range(300):  # long enough a job to be killed half way
        container.upload_blob(f"{month}/img{index:03d}.png", image_bytes("PNG", size=(300, 300)), overwrite=True)
    with_backend(AzureMLRegisterDataAssetOperator(
        task_id="register", name="monthly-images", version=month,
        path=f"azureml://datastores/locimages/paths/{month}/"), backend).execute(context())
    _submit(backend, month, base)
    rows = backend.workspace.job_dir(base) / "rows"
    deadline = time.monotonic() + 120
    while not (rows.is_dir() and list(rows.glob("*.jsonl"))):
        assert time.monotonic() < deadline, "no mini-batch finished in time"
        time.sleep(0.02)
    _kill(backend, base)
    while backend.get_job(base).status != "Failed":
        assert time.monotonic() < deadline, f"the killed job is {backend.get_job(base).status}, not Failed"
        time.sleep(0.05)
    finished = len(list(rows.glob("*.jsonl")))
    assert 0 < finished < 150
    assert _submit(backend, month, base) == f"{base}-r1"
    _wait(backend, f"{base}-r1").execute(context())
    log = (backend.workspace.job_dir(f"{base}-r1") / jobs.LOG_FILE).read_text()
    assert f"{finished} already done" in log
    assert backend.get_job(f"{base}-r1").details["counts"] == {"inputs": 300, "scored": 300, "errors": 0}


def test_on_kill_leaves_no_job_running(backend):
    _submit(backend)
    _wait(backend, BASE).on_kill()
    assert backend.get_job(BASE).status == "Canceled"
    process = read_json(backend.workspace.job_dir(BASE) / jobs.PROCESS_FILE)
    with pytest.raises(ProcessLookupError):
        os.killpg(process["pid"], 0)


def test_unregistered_model_is_a_clear_error(backend):
    operator = with_backend(AzureMLSubmitScoringJobOperator(
        task_id="submit", job_name=BASE, month=MONTH, data_asset_name="monthly-images", data_asset_version=MONTH,
        model_name="nope", model_version="3", compute_name="local-pool"), backend)
    with pytest.raises(BackendError, match="model nope:3 is not registered"):
        operator.execute(context())


def test_registering_another_path_for_the_same_month_is_refused(backend):
    operator = with_backend(AzureMLRegisterDataAssetOperator(
        task_id="register", name="monthly-images", version=MONTH,
        path=f"azureml://datastores/other/paths/{MONTH}/"), backend)
    with pytest.raises(BackendError, match="already registered with path"):
        operator.execute(context())


def test_the_wait_reports_the_jobs_progress(backend):
    _submit(backend)
    _wait(backend, BASE).execute(context())
    assert backend.get_job(BASE).details["progress"].startswith("job done: 6 images, 6 scored, 0 errors")

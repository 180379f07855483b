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
from scoring.job_settings import JobSettings
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


def test_the_local_job_runs_the_entry_script_with_the_scoring_profile(backend):
    _submit(backend)
    arguments = read_json(backend.workspace.job_dir(BASE) / jobs.SPEC_FILE)["program_arguments"]
    settings = JobSettings(mini_batch_size=2, max_concurrency_per_instance=1)
    assert arguments[arguments.index("--device"):] == settings.program_arguments()
    _wait(backend, BASE).execute(context())


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
    rows = backend.workspace.month_dir("locimages", f"{month}/") / "rows"
    deadline = time.monotonic() + 120
    while not (rows.is_dir() and list(rows.glob("*.jsonl"))):
        assert time.monotonic() < deadline, "no mini-batch finished in time"
        time.sleep(0.02)
    _kill(backend, base)
    while backend.get_job(base).status != "Failed":
        assert time.monotonic() < deadline, f"the killed job is {backend.get_job(base).status}, not Failed"
        time.sleep(0.05)
    finished = sum(len(path.read_text().splitlines()) for path in rows.glob("*.jsonl"))
    assert 0 < finished < 300
    assert _submit(backend, month, base) == f"{base}-r1"
    _wait(backend, f"{base}-r1").execute(context())
    log = (backend.workspace.job_dir(f"{base}-r1") / jobs.LOG_FILE).read_text()
    assert f"{finished} finished rows on record" in log and f"({finished} rows reused)" in log
    assert backend.get_job(f"{base}-r1").details["counts"] == {"inputs": 300, "scored": 300, "errors": 0}
    assert backend.get_job(f"{base}-r1").details["progress"]["reused"] == finished


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


def test_the_wait_reports_the_jobs_progress_as_data(backend):
    _submit(backend)
    _wait(backend, BASE).execute(context())
    progress = backend.get_job(BASE).details["progress"]
    assert {k: progress[k] for k in ("phase", "items_done", "items_total", "batches_done", "batches_total",
                                     "errors")} == {"phase": "done", "items_done": 6, "items_total": 6,
                                                    "batches_done": 3, "batches_total": 3, "errors": 0}
    # The profile the workers resolved at init() (this model records no precision check: fp32).
    assert progress["profile"].startswith("scoring profile cpu, fp32, channels_last on, batch 32, decode inline")


def _rows_scored(backend, name) -> int:
    return backend.get_job(name).details["progress"]["items_done"] - backend.get_job(name).details["progress"]["reused"]


def test_retry_after_a_killed_job_submits_the_next_attempt_and_scores_only_what_is_left(backend, blob_service):
    """The path an operator hits: job process SIGKILLed, the wait fails, Airflow retries the wait."""
    import csv

    month, base = "202607", "local-test-202607"
    container = blob_service.get_container_client("locimages")
    for index in range(200):
        container.upload_blob(f"{month}/img{index:03d}.png", image_bytes("PNG", size=(300, 300)), overwrite=True)
    with_backend(AzureMLRegisterDataAssetOperator(
        task_id="register", name="monthly-images", version=month,
        path=f"azureml://datastores/locimages/paths/{month}/"), backend).execute(context())
    submit = with_backend(AzureMLSubmitScoringJobOperator(
        task_id="submit", job_name=base, month=month, data_asset_name="monthly-images", data_asset_version=month,
        model_name="shapes-classifier", model_version="1", compute_name="local-pool",
        job_settings={"mini_batch_size": 2, "max_concurrency_per_instance": 1}), backend)
    first = context()
    assert submit.execute(first) == base
    rows = backend.workspace.month_dir("locimages", f"{month}/") / "rows"
    deadline = time.monotonic() + 120
    while not (rows.is_dir() and len(list(rows.glob("*.jsonl"))) >= 3):
        assert time.monotonic() < deadline, "no mini-batch finished in time"
        time.sleep(0.02)
    _kill(backend, base)

    with pytest.raises(AzureMLJobFailed, match="ended without a final state"):
        _wait(backend, base, job_spec=first["ti"].xcom["job_spec"]).execute(context(try_number=1))
    finished = sum(len(path.read_text().splitlines()) for path in rows.glob("*.jsonl"))
    retry = context(try_number=2)
    event = _wait(backend, base, job_spec=first["ti"].xcom["job_spec"]).execute(retry)
    assert event["job_name"] == f"{base}-r1" and event["status"] == "success"
    assert f"/{base}-r1/" in retry["ti"].xcom["job_url"]  # the Studio link follows the attempt
    progress = backend.get_job(f"{base}-r1").details["progress"]
    assert progress["reused"] == finished and progress["items_done"] == 200
    with open(backend.workspace.job_dir(f"{base}-r1") / "outputs" / "predictions.csv", newline="") as handle:
        images = [row["image"] for row in csv.DictReader(handle)]
    assert sorted(images) == [f"img{i:03d}.png" for i in range(200)]  # every image exactly once


def test_a_blob_added_after_the_month_completed_is_scored_by_the_next_run(backend, blob_service):
    from batch_scoring.month_listing import month_fingerprint

    container = blob_service.get_container_client("locimages")

    def submit():
        _count, fingerprint = month_fingerprint(container, MONTH)
        return with_backend(AzureMLSubmitScoringJobOperator(
            task_id="submit", job_name=BASE, month=MONTH, data_asset_name="monthly-images",
            data_asset_version=MONTH, model_name="shapes-classifier", model_version="1", compute_name="local-pool",
            job_settings={"mini_batch_size": 2, "max_concurrency_per_instance": 1},
            inputs_fingerprint=fingerprint), backend).execute(context())

    assert submit() == BASE
    _wait(backend, BASE).execute(context())
    assert submit() == BASE  # nothing changed: nothing submitted
    container.upload_blob(f"{MONTH}/late.jpg", image_bytes("JPEG"), overwrite=True)
    assert submit() == f"{BASE}-r1"
    _wait(backend, f"{BASE}-r1").execute(context())
    progress = backend.get_job(f"{BASE}-r1").details["progress"]
    assert (progress["items_total"], progress["reused"]) == (7, 6)  # only the late blob was scored
    assert backend.get_job(f"{BASE}-r1").details["counts"] == {"inputs": 7, "scored": 7, "errors": 0}
    container.delete_blob(f"{MONTH}/late.jpg")

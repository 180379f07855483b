"""Local jobs for real: a separate process per job, killed, cancelled, restarted, over Azurite."""

import csv
import os
import signal
import time

import pytest

from localml import jobs
from localml.workspace import LocalWorkspace, WorkspaceError, read_json
from support import image_bytes

MONTH = "202610"


@pytest.fixture
def month_container(blob_service, request):
    name = f"images-{abs(hash(request.node.name)) % 10**8}"
    container = blob_service.create_container(name)
    yield container
    container.delete_container()


def _upload(container, names):
    for name in names:
        container.upload_blob(f"{MONTH}/{name}", image_bytes("JPEG"), overwrite=True)


@pytest.fixture
def workspace(tmp_path):
    return LocalWorkspace(tmp_path / "ws")


@pytest.fixture
def spec(tmp_path, workspace, model_dir, month_container):
    def make(*, entry="tests/scoring/fault_entry.py", arguments=(), **settings):
        state = tmp_path / "entry-state"
        state.mkdir(exist_ok=True)
        return {
            "month": MONTH,
            "input": {"container": month_container.container_name, "prefix": f"{MONTH}/"},
            "code_root": str(jobs.PROJECT_ROOT),
            "entry_script": entry,
            "model": {"name": "shapes-classifier", "version": "1"},
            "model_dir": str(model_dir),
            "month_dir": str(workspace.month_dir(month_container.container_name, f"{MONTH}/")),
            "program_arguments": ["--state", str(state), *arguments],
            "settings": {"mini_batch_size": 1, "max_concurrency_per_instance": 1, **settings},
        }
    return make


def _wait(workspace, name, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.get(workspace, name)
        if status["status"] in jobs.FINISHED_STATUSES:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {name} not finished after {timeout}s: {status}")


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _env(azurite, container):
    """What the local backend hands a job: a read-only signed URL of its month's container."""
    from datetime import timedelta

    from scoring.blob_inputs import read_only_container_url

    return {jobs.STORAGE_ENV: read_only_container_url(azurite.connection_string, container.container_name,
                                                      lifetime=timedelta(hours=1))}


def test_a_job_runs_in_its_own_process_and_completes(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["a.jpg", "sub dir/b.jpg", "bad.jpg"])
    submitted = jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    assert submitted["status"] == jobs.JobStatus.PREPARING
    status = _wait(workspace, "job-1")
    assert status["status"] == jobs.JobStatus.COMPLETED, status
    assert status["counts"] == {"inputs": 3, "scored": 2, "errors": 1}
    with open(workspace.job_dir("job-1") / "outputs" / "predictions.csv", encoding="utf-8") as handle:
        assert [row["image"] for row in csv.DictReader(handle)] == ["a.jpg", "sub dir/b.jpg"]
    assert jobs.STORAGE_ENV not in (workspace.job_dir("job-1") / "spec.json").read_text()


def test_job_names_are_used_once(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["a.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    with pytest.raises(WorkspaceError, match="already exists"):
        jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    _wait(workspace, "job-1")


def test_a_threshold_breach_fails_the_job_with_one_line(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["bad1.jpg", "bad2.jpg", "ok.jpg"])
    jobs.submit(workspace, "job-1", spec(error_threshold=1), env=_env(azurite, month_container))
    status = _wait(workspace, "job-1")
    assert status["status"] == jobs.JobStatus.FAILED
    assert "above error_threshold=1" in status["error"] and "\n" not in status["error"]


def test_cancel_stops_the_process_group(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["hang.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    runs_log = tmp_path / "entry-state" / "runs.log"
    _wait_for(runs_log.exists)  # a worker is inside run()
    process = read_json(workspace.job_dir("job-1") / jobs.PROCESS_FILE)
    status = jobs.cancel(workspace, "job-1")
    assert status["status"] == jobs.JobStatus.CANCELED
    with pytest.raises(ProcessLookupError):
        os.killpg(process["pid"], 0)


def test_a_cancel_that_does_not_wait_only_signals_and_the_job_records_its_end(tmp_path, azurite, month_container,
                                                                               workspace, spec):
    _upload(month_container, ["hang.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    _wait_for((tmp_path / "entry-state" / "runs.log").exists)  # a worker is inside run()
    status = jobs.cancel(workspace, "job-1", wait=False)
    assert status["status"] == jobs.JobStatus.CANCEL_REQUESTED  # returned at once: SIGTERM sent, nothing awaited
    _wait_for(lambda: jobs.get(workspace, "job-1")["status"] == jobs.JobStatus.CANCELED)


def test_a_killed_job_is_failed_then_resumes_where_it_stopped(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["0-slow.jpg", "1-slow.jpg", "2-slow.jpg", "3-slow.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    rows = workspace.month_dir(month_container.container_name, f"{MONTH}/") / "rows"
    _wait_for(lambda: rows.is_dir() and len(list(rows.glob("*.jsonl"))) >= 2)
    process = read_json(workspace.job_dir("job-1") / jobs.PROCESS_FILE)
    os.killpg(process["pid"], signal.SIGKILL)
    _wait_for(lambda: jobs.get(workspace, "job-1")["status"] == jobs.JobStatus.FAILED)
    assert "ended without a final state" in jobs.get(workspace, "job-1")["error"]
    done_before = {path.name for path in rows.glob("*.jsonl")}
    runs_log = tmp_path / "entry-state" / "runs.log"
    runs_log.unlink()

    jobs.start(workspace, "job-1", env=_env(azurite, month_container))
    status = _wait(workspace, "job-1")
    assert status["status"] == jobs.JobStatus.COMPLETED
    assert status["counts"] == {"inputs": 4, "scored": 4, "errors": 0}
    rescored = {line.split(" ", 1)[1] for line in runs_log.read_text().splitlines()}
    assert len(rescored) == 4 - len(done_before)


def test_a_blob_name_that_is_no_safe_path_is_listed_not_lost(tmp_path, azurite, month_container, workspace, spec):
    _upload(month_container, ["ok.jpg", "odd//name.jpg", "folder-marker/"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    status = _wait(workspace, "job-1")
    assert status["counts"] == {"inputs": 3, "scored": 1, "errors": 2}
    with open(workspace.job_dir("job-1") / "outputs" / "errors.csv", encoding="utf-8") as handle:
        errors = {row["image"]: row for row in csv.DictReader(handle)}
    assert set(errors) == {"odd//name.jpg", "folder-marker/"}
    assert "rename the blob" in errors["odd//name.jpg"]["message"]


def test_attempts_share_one_download_of_the_month_and_it_is_removed_once_completed(azurite, month_container,
                                                                                  workspace, spec):
    _upload(month_container, ["a.jpg", "b.jpg"])
    inputs = workspace.month_dir(month_container.container_name, f"{MONTH}/") / "inputs"
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    assert _wait(workspace, "job-1")["status"] == jobs.JobStatus.COMPLETED
    assert not inputs.exists()
    assert not (workspace.job_dir("job-1") / "inputs").exists()  # no copy of the month per attempt


def test_a_clock_step_does_not_make_a_live_job_dead(tmp_path, azurite, month_container, workspace, spec,
                                                    monkeypatch):
    """A VM paused for a while or an NTP step moves the boot time psutil computes from the wall clock: a job
    whose process still runs must still read as running."""
    import psutil

    _upload(month_container, ["hang.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    _wait_for((tmp_path / "entry-state" / "runs.log").exists)  # a worker is inside run()
    assert jobs.get(workspace, "job-1")["status"] == jobs.JobStatus.RUNNING
    real_boot_time = psutil.boot_time()
    monkeypatch.setattr(psutil, "boot_time", lambda: real_boot_time + 1.0)
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: real_boot_time + 1.0)
    monkeypatch.setattr(psutil._pslinux, "BOOT_TIME", real_boot_time + 1.0, raising=False)
    assert jobs.get(workspace, "job-1")["status"] == jobs.JobStatus.RUNNING
    jobs.cancel(workspace, "job-1")


def test_a_job_process_inherits_no_secret_of_its_submitter(tmp_path, azurite, month_container, workspace, spec,
                                                           monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", "connection-with-the-account-key")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "a-client-secret")
    _upload(month_container, ["hang.jpg"])
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    _wait_for((tmp_path / "entry-state" / "runs.log").exists)
    process = read_json(workspace.job_dir("job-1") / jobs.PROCESS_FILE)
    import psutil

    job = psutil.Process(process["pid"])
    job_env, workers = job.environ(), job.children(recursive=True)
    worker_envs = {f"{worker.pid}:{name}": value for worker in workers for name, value in worker.environ().items()}
    jobs.cancel(workspace, "job-1")
    assert workers
    # The job process holds its read-only signature, and nothing of its submitter's secrets ...
    assert [name for name, value in job_env.items() if "sig=" in value] == [jobs.STORAGE_ENV]
    assert "sp=rl" in job_env[jobs.STORAGE_ENV]  # read and list, nothing more
    # ... and its workers, which read local files only, hold no credential at all.
    leaked = [name for name, value in {**job_env, **worker_envs}.items()
              if value in ("connection-with-the-account-key", "a-client-secret") or "AccountKey" in value
              or ("sig=" in value and name != jobs.STORAGE_ENV)]
    assert not leaked, leaked


def test_a_month_folder_in_use_by_another_attempt_is_not_removed(tmp_path, azurite, month_container, workspace,
                                                                 spec):
    """Two attempts of one month at once (a live one wrongly taken for dead, say): the first to finish leaves the
    shared download to the other, which still reads it."""
    _upload(month_container, ["a.jpg", "b-slow.jpg"])
    inputs = workspace.month_dir(month_container.container_name, f"{MONTH}/") / "inputs"
    runs_log = tmp_path / "entry-state" / "runs.log"
    jobs.submit(workspace, "job-2", spec(), env={**_env(azurite, month_container), "FAULT_ENTRY_SLOW_S": "60"})
    _wait_for(lambda: runs_log.exists() and "b-slow.jpg" in runs_log.read_text())  # job-2 is scoring it
    jobs.submit(workspace, "job-1", spec(), env=_env(azurite, month_container))
    assert _wait(workspace, "job-1")["status"] == jobs.JobStatus.COMPLETED
    assert (inputs / "b-slow.jpg").is_file()  # job-2 still uses it
    assert jobs.get(workspace, "job-2")["status"] == jobs.JobStatus.RUNNING
    jobs.cancel(workspace, "job-2")

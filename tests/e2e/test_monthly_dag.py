"""The monthly DAG through Airflow itself (`airflow dags test`), on Azurite and the local backend."""

import csv
import html
import io
import json
import shutil
import subprocess
import sys

import pytest

from scoring.items import MONTH_MARKER

from devstack.airflow_env import LINEAGE_NAMESPACE, airflow_env, lineage_file
from support import write_small_month

MONTH = "202610"
LOGICAL_DATE = "2026-11-01"  # a run due on 1 November scores October 2026
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory, azurite, model_dir):
    root = tmp_path_factory.mktemp("stack")
    shutil.copytree(model_dir, root / "state" / "localml" / "models" / "shapes-classifier" / "1")
    env = airflow_env(azurite, state_dir=root / "state", airflow_home=root / "airflow",
                      deadline_alerts=False)  # `airflow dags test` cannot run the DAG's deadline
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return root, env


@pytest.fixture(scope="module")
def uploaded_month(tmp_path_factory, blob_service_module):
    folder = tmp_path_factory.mktemp("month") / MONTH
    expected = write_small_month(folder)
    container = blob_service_module.get_container_client("images")
    if not container.exists():  # other tests of the session may have made it
        container.create_container()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        container.upload_blob(f"{MONTH}/{path.relative_to(folder).as_posix()}", path.read_bytes())
    container.upload_blob(f"{MONTH}/{MONTH_MARKER}", b"")  # the uploader's last word: the month is complete
    return expected


@pytest.fixture(scope="module")
def mailbox():
    from support import running_mailbox

    yield from running_mailbox()


@pytest.fixture(scope="module")
def blob_service_module(azurite):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite.connection_string)


def _dags_test(env, conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "-c", json.dumps(conf), "monthly_batch_scoring",
         LOGICAL_DATE],
        env=env, capture_output=True, text=True, timeout=600,
    )


def _published(blob_service, name: str) -> bytes:
    return blob_service.get_container_client("predictions").download_blob(f"{MONTH}/{name}").readall()


def test_a_month_is_scored_validated_and_published(stack, uploaded_month, blob_service_module):
    _root, env = stack
    result = _dags_test(env, {"poll_interval": 1})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    predictions = list(csv.DictReader(io.StringIO(_published(blob_service_module, "predictions.csv").decode())))
    errors = list(csv.DictReader(io.StringIO(_published(blob_service_module, "errors.csv").decode())))
    header = _published(blob_service_module, "predictions.csv").decode().splitlines()[0]
    assert header == "image,label,score,model_name,model_version,month"
    good = sorted(item for item, outcome in uploaded_month.items() if outcome == "ok")
    assert [row["image"] for row in predictions] == good
    assert {row["image"]: row["error_type"] for row in errors} == {
        item: outcome for item, outcome in uploaded_month.items() if outcome != "ok"}
    assert {row["month"] for row in predictions} == {MONTH}
    scored, failed = {r["image"] for r in predictions}, {r["image"] for r in errors}
    assert scored | failed == set(uploaded_month) and not scored & failed

    manifest = json.loads(_published(blob_service_module, "manifest.json"))
    assert manifest["month"] == MONTH
    assert manifest["counts"] == {"inputs": len(uploaded_month), "scored": len(good),
                                  "errors": len(uploaded_month) - len(good)}
    assert (manifest["model_name"], manifest["model_version"]) == ("shapes-classifier", "1")
    assert manifest["job_name"] == "monthly-batch-scoring-202610"
    assert set(manifest["files"]) == {"predictions.csv", "errors.csv", "report.html"}
    assert manifest["run_id"].startswith("manual__") and manifest["published_at"].startswith("20")
    assert manifest["drift"] is None and sum(manifest["summary"]["labels"].values()) == len(good)
    report = _published(blob_service_module, "report.html").decode()
    assert "Nothing to compare with: no published month 202609." in report and "Errors by type" in report
    types = {blob.name.split("/")[-1]: blob.content_settings.content_type for blob in
             blob_service_module.get_container_client("predictions").list_blobs(name_starts_with=f"{MONTH}/")}
    assert types == {"predictions.csv": "text/csv; charset=utf-8", "errors.csv": "text/csv; charset=utf-8",
                     "report.html": "text/html; charset=utf-8", "manifest.json": "application/json"}

    # Lineage, read back from the OpenLineage provider's file transport: the month's folder in, its files out.
    events = [json.loads(line) for line in lineage_file(_root / "state").read_text().splitlines() if line.strip()]
    published = [event for event in events if event["eventType"] == "COMPLETE"
                 and event["job"]["name"] == "monthly_batch_scoring.validate_and_publish"]
    assert len(published) == 1, [(event["eventType"], event["job"]["name"]) for event in events]
    event = published[0]
    assert event["job"]["namespace"] == LINEAGE_NAMESPACE
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
        ("wasbs://images@devstoreaccount1.blob.core.windows.net", f"{MONTH}/")]
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [
        ("wasbs://predictions@devstoreaccount1.blob.core.windows.net", f"{MONTH}/{name}")
        for name in ("predictions.csv", "errors.csv", "report.html", "manifest.json")]
    assert event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == len(good)
    facet = event["run"]["facets"]["batchScoring"]
    assert (facet["jobName"], facet["month"], facet["inputs"], facet["scored"]) == (
        "monthly-batch-scoring-202610", MONTH, len(uploaded_month), len(good))


def test_a_dags_test_run_gets_the_month_note_the_scheduler_listener_writes(stack, uploaded_month):
    """`make demo` runs `airflow dags test`, which fires no listener: its runs are noted afterwards, by the
    listener's own code."""
    import sqlite3

    from devstack.demo import note_runs

    root, env = stack
    result = _dags_test(env, {"poll_interval": 1})
    assert result.returncode == 0, result.stdout[-3000:]
    note_runs(env)
    with sqlite3.connect(root / "airflow" / "airflow.db") as db:
        notes = {content for (content,) in db.execute("SELECT content FROM dag_run_note")}
    assert f"month {MONTH}" in notes, notes


def test_the_storage_key_appears_in_no_log_and_no_state_file(stack, uploaded_month):
    from devstack.azurite import ACCOUNT_KEY

    root, env = stack
    result = _dags_test(env, {"poll_interval": 1})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    written = [p for p in (root / "state").rglob("*") if p.is_file() and p.suffix in (".json", ".log", ".jsonl")]
    written += [p for p in (root / "airflow").rglob("*.log") if p.is_file()]
    assert written
    for path in written:
        assert ACCOUNT_KEY not in path.read_text(encoding="utf-8", errors="replace"), path


def test_a_month_published_through_a_sas_connection_shows_its_signature_nowhere(stack, blob_service_module,
                                                                              azurite):
    """wasb_default made from a SAS connection string (a common way to grant access): the signature is a secret,
    and no published file, log or state file may carry it."""
    import datetime as dt
    from urllib.parse import parse_qs

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from devstack.azurite import ACCOUNT, ACCOUNT_KEY
    from support import image_bytes

    root, env = stack
    month = "202603"
    sas = generate_account_sas(ACCOUNT, ACCOUNT_KEY, ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                                                     create=True),
                               expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    signature = parse_qs(sas)["sig"][0]
    sas_env = {**env, "AIRFLOW_CONN_WASB_DEFAULT": json.dumps({"conn_type": "wasb", "extra": {
        "connection_string": f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"}})}
    container = blob_service_module.get_container_client("images")
    if not container.exists():
        container.create_container()
    for index in range(3):
        container.upload_blob(f"{month}/{index}.png", image_bytes("PNG"), overwrite=True)
    container.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
    result = _dags_test(sas_env, {"month": month, "poll_interval": 1})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    published = blob_service_module.get_container_client("predictions")
    files = {blob.name: published.download_blob(blob.name).readall()
             for blob in published.list_blobs(name_starts_with=f"{month}/")}
    assert set(files) == {f"{month}/{name}" for name in ("predictions.csv", "errors.csv", "report.html",
                                                          "manifest.json")}
    written = [p for p in (root / "state").rglob("*") if p.is_file() and p.suffix in (".json", ".log", ".jsonl")]
    written += [p for p in (root / "airflow").rglob("*.log") if p.is_file()]
    for secret in (signature, sas):
        assert secret not in result.stdout + result.stderr
        for name, data in files.items():
            assert secret.encode() not in data, name
        for path in written:
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), path
    report = html.unescape(files[f"{month}/report.html"].decode())
    assert "&sig=" not in report and f"container 'images', folder {month}/ on storage account '{ACCOUNT}'" in report


def test_running_the_month_again_reuses_the_completed_job(stack, uploaded_month, blob_service_module):
    root, env = stack
    before = _published(blob_service_module, "predictions.csv")
    jobs = root / "state" / "localml" / "jobs"
    jobs_before = sorted(p.name for p in jobs.iterdir())  # other tests' months may be there too
    assert "monthly-batch-scoring-202610" in jobs_before
    result = _dags_test(env, {"poll_interval": 1})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "already scored month 202610 with shapes-classifier:1; nothing submitted" in result.stdout + result.stderr
    assert sorted(p.name for p in jobs.iterdir()) == jobs_before
    assert _published(blob_service_module, "predictions.csv") == before


@pytest.mark.parametrize("bad_month", ["2026-13", "../x"])
def test_a_bad_month_is_refused_before_any_io(stack, bad_month):
    root, env = stack
    jobs_before = sorted((root / "state" / "localml").rglob("*.json"))
    result = _dags_test(env, {"month": bad_month})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # The plan task's own one line, by the month rule: not any failure that happens to echo the conf.
    assert f"invalid month {bad_month!r}: expected YYYYMM" in output, output[-3000:]
    assert "plan_run" in output and "AirflowFailException" in output
    assert sorted((root / "state" / "localml").rglob("*.json")) == jobs_before


def test_the_documented_backfill_command_plans_one_partition_per_month(stack):
    """The command docs/airflow.md shows, as a dry run (the scheduler test runs a backfill for real)."""
    import re

    _root, env = stack
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*airflow, "backfill", "create", "--dag-id", "monthly_batch_scoring", "--from-date", "2026-01-01",
         "--to-date", "2026-03-01", "--dry-run"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.findall(r"\|\s*(\d{6})\s*\|", result.stdout) == ["202601", "202602", "202603"], result.stdout


def test_airflow_retries_the_wait_after_the_job_is_killed_and_the_next_attempt_finishes_the_month(
        stack, blob_service_module):
    """What an operator sees: the job's process SIGKILLed mid-month, the wait task fails, Airflow retries it,
    the retry submits -r1, which scores only what is left, and the month is published whole."""
    import os
    import signal
    import time

    from localml.workspace import read_json
    from support import image_bytes

    root, env = stack
    month = "202608"
    container = blob_service_module.get_container_client("images")
    if not container.exists():
        container.create_container()
    names = [f"{index:03d}.png" for index in range(600)]
    for name in names:
        container.upload_blob(f"{month}/{name}", image_bytes("PNG", size=(300, 300)), overwrite=True)
    container.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
    base = f"monthly-batch-scoring-{month}"
    jobs_dir = root / "state" / "localml" / "jobs"
    rows = root / "state" / "localml" / "months" / "images" / month / "rows"
    run = subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", "-c", json.dumps({"month": month, "poll_interval": 1}),
         "monthly_batch_scoring", LOGICAL_DATE],
        env={**env, "BATCH_SCORING_RETRY_DELAY_S": "2"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (rows.is_dir() and any(rows.glob("*.jsonl"))):
            assert time.monotonic() < deadline and run.poll() is None, "the job never finished a mini-batch"
            time.sleep(0.05)
        process = read_json(jobs_dir / base / "process.json")
        os.killpg(process["pid"], signal.SIGKILL)
        output, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output[-6000:]
    assert "this try submits the next attempt" in output
    assert sorted(p.name for p in jobs_dir.iterdir() if p.name.startswith(base)) == [base, f"{base}-r1"]
    progress = read_json(jobs_dir / f"{base}-r1" / "progress.json")
    assert 0 < progress["reused"] < len(names)  # what the killed attempt finished was not scored again
    published = blob_service_module.get_container_client("predictions")
    rows_out = list(csv.DictReader(io.StringIO(
        published.download_blob(f"{month}/predictions.csv").readall().decode(), newline="")))
    assert sorted(row["image"] for row in rows_out) == names  # every image exactly once
    manifest = json.loads(published.download_blob(f"{month}/manifest.json").readall())
    assert manifest["job_name"] == f"{base}-r1"


def test_a_clock_step_while_the_job_runs_leaves_it_running_and_the_month_is_scored_once(stack, blob_service_module,
                                                                                      tmp_path):
    """The wall clock steps by 90 s while the month's job scores (a paused VM, an NTP correction): the wait keeps
    following the same job, no second attempt is submitted, and the month is published from it."""
    import os
    import time
    from pathlib import Path

    from support import image_bytes

    root, env = stack
    month = "202604"
    container = blob_service_module.get_container_client("images")
    if not container.exists():
        container.create_container()
    names = [f"{index:03d}.png" for index in range(300)]
    for name in names:
        container.upload_blob(f"{month}/{name}", image_bytes("PNG", size=(300, 300)), overwrite=True)
    container.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
    step = tmp_path / "clock-stepped"
    stepped_env = {**env, "CLOCK_STEP_FILE": str(step), "BATCH_SCORING_RETRY_DELAY_S": "2",
                   "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "clock_step"), env["PYTHONPATH"]])}
    base = f"monthly-batch-scoring-{month}"
    status_file = root / "state" / "localml" / "jobs" / base / "status.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", "-c", json.dumps({"month": month, "poll_interval": 1}),
         "monthly_batch_scoring", LOGICAL_DATE], env=stepped_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 300
        while not (status_file.exists() and '"Running"' in status_file.read_text()):
            assert time.monotonic() < deadline and run.poll() is None, "the job never ran"
            time.sleep(0.1)
        step.touch()  # the clock steps while the job runs
        output, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output[-6000:]
    assert "ended without a final state" not in output
    jobs = sorted(p.name for p in (root / "state" / "localml" / "jobs").iterdir() if p.name.startswith(base))
    assert jobs == [base]  # one attempt: the live job was never declared dead
    manifest = json.loads(blob_service_module.get_container_client("predictions")
                          .download_blob(f"{month}/manifest.json").readall())
    assert manifest["job_name"] == base and manifest["counts"]["scored"] == len(names)


def test_the_next_month_is_compared_with_the_last_and_a_shift_is_a_warning(stack, blob_service_module, mailbox):
    """Two small months of different shapes: the second's report and manifest carry drift against the first."""
    import io as bytes_io
    import random

    from devstack.sample_month import draw_image

    def png(label: str, seed: int) -> bytes:
        buffer = bytes_io.BytesIO()
        draw_image(label, random.Random(seed)).save(buffer, format="PNG")
        return buffer.getvalue()

    _root, env = stack
    box = mailbox
    env = {**env, **box.connection_env()}
    container = blob_service_module.get_container_client("images")
    if not container.exists():
        container.create_container()
    before = len(box.messages)
    for month, shapes in (("202507", ["circle"] * 12), ("202508", ["circle"] * 2 + ["square"] * 10)):
        for index, shape in enumerate(shapes):
            container.upload_blob(f"{month}/{index:02d}.png", png(shape, index), overwrite=True)
        container.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
        conf = {"month": month, "poll_interval": 1, "alert_emails": "data-team@example.com"}
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", "-c", json.dumps(conf),
             "monthly_batch_scoring", LOGICAL_DATE], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
        if month == "202507":
            assert len(box.messages) == before  # a clean month: nothing sent
    output = result.stdout + result.stderr
    # The shifted month: one message, naming the month and the reason, with the links.
    [drift_message] = box.messages[before:]
    assert drift_message["To"] == "data-team@example.com"
    subject = box.subjects()[-1]
    assert subject.startswith("month 202508: drift warning: drift vs 202507: label PSI "), subject
    body = drift_message.get_payload(decode=True) if not drift_message.is_multipart() else \
        drift_message.get_payload()[0].get_payload(decode=True)
    assert b"/dags/monthly_batch_scoring/runs/" in body and b"predictions/202508/report.html" in body
    assert "drift vs 202507: label PSI " in output and "above the threshold 0.2" in output
    published = blob_service_module.get_container_client("predictions")
    manifest = json.loads(published.download_blob("202508/manifest.json").readall())
    assert manifest["drift"]["previous_month"] == "202507" and manifest["drift"]["warning"] is True
    report = published.download_blob("202508/report.html").readall().decode()
    assert "Warning: drift vs 202507" in report


def test_a_month_still_uploading_waits_deferred_and_is_scored_once_its_marker_lands(stack, blob_service_module):
    """The folder check through Airflow: no marker yet, so the task defers (no job, nothing registered) and logs
    what it sees; the marker lands; the month is scored and published, the marker never an input."""
    import threading
    import time

    from support import image_bytes

    root, env = stack
    month = "202602"
    container = blob_service_module.get_container_client("images")
    if not container.exists():
        container.create_container()
    for index in range(3):
        container.upload_blob(f"{month}/{index}.png", image_bytes("PNG"), overwrite=True)
    run = subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", "-c", json.dumps({"month": month, "poll_interval": 1}),
         "monthly_batch_scoring", LOGICAL_DATE], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("marker absent; waiting: no _SUCCESS marker yet" in line for line in lines):
            assert time.monotonic() < deadline and run.poll() is None, "".join(lines)[-4000:]
            time.sleep(0.2)
        assert not any(p.name.endswith(month) for p in (root / "state" / "localml" / "jobs").glob("*")) \
            if (root / "state" / "localml" / "jobs").exists() else True  # nothing submitted while it waits
        container.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
        run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    reader.join(10)
    output = "".join(lines)
    assert run.returncode == 0, output[-6000:]
    assert any("TaskDeferred" in line or "deferred" in line.lower() for line in lines)
    published = blob_service_module.get_container_client("predictions")
    predictions, errors = (published.download_blob(f"{month}/{name}").readall().decode()
                           for name in ("predictions.csv", "errors.csv"))
    assert MONTH_MARKER not in predictions + errors
    assert predictions.count("\n") - 1 == 3


def test_a_failed_month_is_one_message_naming_the_month_and_the_reason(stack, mailbox, blob_service_module):
    box = mailbox
    _root, env = stack
    before = len(box.messages)
    conf = {"month": "202501", "poll_interval": 1, "completeness": "any", "completeness_timeout_hours": 0,
            "alert_emails": "data-team@example.com, oncall@example.com"}
    result = _dags_test({**env, **box.connection_env()}, conf)  # no blobs under images/202501/
    assert result.returncode != 0
    assert len(box.messages) == before + 1, box.subjects()[before:]
    subject = box.subjects()[-1]
    assert subject.startswith("month 202501: failed: check_month_folder failed: images/202501/ is not complete "
                              "after 0 h (rule any): no blobs under the month yet"), subject
    assert box.messages[-1]["To"] == "data-team@example.com, oncall@example.com"

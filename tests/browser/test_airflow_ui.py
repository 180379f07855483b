"""What a data engineer meets, through the scheduler: `make airflow`'s stack (standalone on PostgreSQL).

In a real browser (Chromium driven by Playwright): log in, trigger the last complete month from
the form, wait for the run, see the month on the runs, open the submit task's *Azure ML Studio*
link (an http page of the job), read the wait task's log (a progress line and the final summary),
log out and find the job page refused. Screenshots go to `test-output/browser/`; the browser test
is skipped where Debian's chromium is absent (`.ci/run` installs it). Through the REST API, as
scripts and the UI call it: two triggers at once, a misspelt configuration key, a backfill given
a month.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from batch_scoring.month import previous_month
from devstack import azurite as azurite_service
from devstack import postgres
from devstack.airflow_env import airflow_env
from devstack.airflow_ui import admin_password, start_standalone
from localml.process_group import stop_pidfile
from scoring.items import MONTH_MARKER
from scoring.job_settings import JobSettings
from support import image_bytes, running_azurite, running_mailbox

CHROMIUM = Path("/usr/bin/chromium")
# The month unpausing schedules (the last complete one) is the month triggered: both share one job.
MONTH = previous_month(dt.datetime.now(dt.timezone.utc))
IMAGES = 1200
DAG_ID = "monthly_batch_scoring"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
pytestmark = pytest.mark.e2e
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """Its own blob store: the month uploaded here must not be another test's month."""
    yield from running_azurite(tmp_path_factory, "ui-azurite")


DEADLINE_S = 45  # the stack's runs are due this long after they are queued


@pytest.fixture(scope="module")
def mailbox():
    yield from running_mailbox()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, azurite, model_dir, mailbox):
    from azure.storage.blob import BlobServiceClient

    root = tmp_path_factory.mktemp("ui")
    shutil.copytree(model_dir, root / "state" / "localml" / "models" / "shapes-classifier" / "1")
    images = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("images")
    if not images.exists():
        images.create_container()
    # Enough that the job is still running when the waits start (the run that unpausing schedules for MONTH,
    # the last complete month, shares the job with the triggered one: whichever submits, the other reattaches).
    for index in range(IMAGES):
        images.upload_blob(f"{MONTH}/ui/{index:03d}.png", image_bytes("PNG", size=(64 + index % 50, 64)),
                           overwrite=True)
    images.upload_blob(f"{MONTH}/{MONTH_MARKER}", b"", overwrite=True)  # the upload is complete
    port = azurite_service.free_port()
    database = postgres.start(root / "postgres", port=azurite_service.free_port())
    try:
        env = airflow_env(azurite, state_dir=root / "state", airflow_home=root / "airflow",
                          api_url=f"http://127.0.0.1:{port}", database_url=database.sqlalchemy_url)
        env.update({  # alerts: the local mailbox, a default recipient, a short deadline
            **mailbox.connection_env(),
            "BATCH_SCORING_ALERT_EMAILS": "oncall@example.com",
            "BATCH_SCORING_PUBLISH_DEADLINE_H": str(DEADLINE_S / 3600),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        })
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        pidfile = root / "standalone.pid"
        url = start_standalone(env, port, pidfile=pidfile, logfile=root / "standalone.log")
        try:
            yield url, admin_password(root / "airflow")
        finally:
            stop_pidfile(pidfile, grace_s=60)
    finally:
        postgres.stop(root / "postgres", discard=True)


class Api:
    def __init__(self, url: str, password: str):
        self.url = url
        self.token = self._call("/auth/token", "POST", {"username": "admin", "password": password})["access_token"]

    def _call(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs(self, dag_id: str = DAG_ID) -> list[dict]:
        return self._call(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after")["dag_runs"]

    def wait_for(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while not (found := condition()):
            assert time.monotonic() < deadline, what
            time.sleep(1)
        return found

    def unpause(self, dag_id: str = DAG_ID) -> None:
        self._call(f"/api/v2/dags/{dag_id}", "PATCH", {"is_paused": False})

    def trigger(self, conf: dict) -> dict:
        return self._call(f"/api/v2/dags/{DAG_ID}/dagRuns", "POST", {"logical_date": None, "conf": conf})

    def run(self, run_id: str) -> dict:
        return self._call(f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def finished(self, run_id: str, timeout_s: float = 300) -> dict:
        return self.wait_for(lambda: (run := self.run(run_id))["state"] in ("success", "failed") and run,
                             timeout_s, f"run {run_id} did not finish")

    def task_log(self, run_id: str, task_id: str) -> str:
        answer = self._call(f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                            f"{task_id}/logs/1?full_content=true")
        content = answer.get("content")
        return json.dumps(content) if not isinstance(content, str) else content

    def task_state(self, run_id: str, task_id: str) -> str:
        return self._call(f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                          f"{task_id}")["state"]

    def wait_dag_visible(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._call(f"/api/v2/dags/{DAG_ID}")
                return
            except urllib.error.HTTPError:
                time.sleep(2)
        raise AssertionError(f"{DAG_ID} was not parsed within {timeout_s:.0f}s")


@needs_chromium
def test_a_person_triggers_a_month_and_follows_it_in_the_ui(stack):
    from playwright.sync_api import expect, sync_playwright

    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    # CI has two cores, shared with Airflow and the job: give each page element 15 s, not Playwright's 5.
    expect.set_options(timeout=15_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(url)
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(url + "/", timeout=30_000)

            # The trigger form: the month, explained, and a short poll.
            page.goto(f"{url}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").first.click()
            form = page.get_by_role("dialog")
            form.get_by_text("Compute", exact=True).click()
            form.locator("input[name=element_poll_interval]").fill("2")
            # Job settings titled in words, from the one definition of the settings.
            form.get_by_text("Job settings", exact=True).click()
            expect(form.get_by_role("spinbutton", name="Files per mini-batch")).to_be_visible()
            expect(form.get_by_role("spinbutton", name="Failed images tolerated")).to_be_visible()
            form.get_by_text("Month", exact=True).click()
            expect(form.get_by_text("six digits, year then month")).to_be_visible()
            form.locator("#element_month").fill(MONTH)  # last: once the JSON shows it, it shows the rest too
            # What the button sends is the form's JSON, which follows the fields a render later: read it back
            # first, as a person checking the form would (clicking before it caught up once sent an empty conf).
            # The editor renders only its first lines; the month is on the first.
            form.get_by_text("Advanced Options", exact=True).click()
            conf_json = form.locator(".monaco-editor .view-lines")
            expect(conf_json).to_contain_text(f'"month": "{MONTH}"')
            form.screenshot(path=SHOTS / "01-trigger-form.png")
            before = {run["dag_run_id"] for run in api.runs()}
            form.get_by_role("button", name="Trigger").click()
            created = api.wait_for(lambda: [r for r in api.runs()
                                            if r["dag_run_id"] not in before and r["run_type"] == "manual"], 60,
                                   "the form's trigger created no run")
            assert {"month": MONTH, "poll_interval": 2}.items() <= created[0]["conf"].items(), created[0]
            # New DAGs start paused: the run waits in the queue until the DAG is switched on.
            api.unpause()

            deadline = time.monotonic() + 420
            run = None
            while time.monotonic() < deadline:
                ours = [r for r in api.runs() if r["dag_run_id"] not in before and r["run_type"] == "manual"]
                run = ours[0] if ours else None
                if run and run["state"] in ("success", "failed"):
                    break
                time.sleep(3)
            assert run and run["state"] == "success", run
            run_id = run["dag_run_id"]
            run_path = f"{url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id)}"

            # The month on every run: the runs list (run ids of scheduled runs, Conf of all) and the run's note.
            page.goto(f"{url}/dags/{DAG_ID}/runs")
            # The Conf cell folds its JSON once rendered (`{⋯}`): a person opens the fold to read it. Wait for the
            # fold, then open it (read before it folds, the cell passed by luck; read after, it shows `{}`).
            conf_cell = page.locator("tbody tr").filter(has_text=run_id).locator(".monaco-editor")
            fold = conf_cell.locator(".inline-folded")
            expect(fold).to_be_visible()
            fold.click()
            expect(conf_cell.locator(".view-lines")).to_contain_text(f'"month": "{MONTH}"')
            # Unpausing scheduled the month as Airflow's partition: its run id and partition key name it.
            expect(page.get_by_text(re.compile(rf"^scheduled__\S+__{MONTH}__"))).to_be_visible()
            page.screenshot(path=SHOTS / "02-runs.png")
            page.goto(run_path)
            expect(page.get_by_text(f"month {MONTH}")).to_be_visible()
            page.screenshot(path=SHOTS / "03-run-note.png")

            # The link: a button on the submit task's details, opening the job's page over http.
            page.goto(f"{run_path}/tasks/submit_scoring_job/details")
            link = page.get_by_role("link", name="Azure ML Studio")
            expect(link).to_be_visible()
            target = link.get_attribute("href")
            assert target.startswith(f"{url}/batch-scoring/jobs/monthly-batch-scoring-{MONTH}"), target
            page.screenshot(path=SHOTS / "04-studio-link.png")
            link.click()
            page.wait_for_url(target)
            expect(page.get_by_role("heading", name=re.compile(r"^Job monthly-batch-scoring-"))).to_be_visible()
            expect(page.locator("table")).to_contain_text("Completed")
            expect(page.locator("#job-log")).to_contain_text("mini-batch")
            expect(page.get_by_role("link", name=re.compile(r"^Airflow run "))).to_be_visible()  # back to the run
            page.screenshot(path=SHOTS / "05-job-page.png")
            job_log = page.request.get(f"{target}/log").text()
            # A log people read: a line per mini-batch and a few more, no HTTP request dumps.
            batches = math.ceil(IMAGES / JobSettings().mini_batch_size)
            assert len(re.findall(r"mini-batch \S+ done: \d+ images, \d+ errors, [\d.]+s", job_log)) == batches
            assert len(job_log.splitlines()) < batches + 30, job_log[-3000:]
            assert len(job_log.encode()) / IMAGES < 60  # bytes per image
            assert "Request URL" not in job_log and "Response status" not in job_log

            # The wait task's log: live progress while the job ran, then the final summary.
            page.goto(f"{run_path}/tasks/wait_for_scoring_job")
            expect(page.get_by_text(re.compile(rf"job monthly-batch-scoring-{MONTH}\S* is \w+ \(.+\)"))
                   .first).to_be_visible(timeout=30_000)
            expect(page.get_by_text(re.compile(
                rf"job monthly-batch-scoring-{MONTH}\S* Completed: \d+ images, \d+ scored, \d+ errors; in [\d.]+s "
                r"\([\d.]+ img/s\)")).last).to_be_visible()
            page.screenshot(path=SHOTS / "06-wait-log.png", full_page=True)

            # Logged out, the job page and its log are refused: they show paths, run ids and logs.
            page.context.clear_cookies()
            for address in (target, f"{target}/log"):
                refused = page.goto(address)
                assert refused.status == 401, (address, refused.status)
                assert "mini-batch" not in page.content()
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()


def test_two_triggers_at_once_both_answer_and_both_runs_succeed(stack):
    """On SQLite one of two simultaneous triggers answered 500 after 60 s; on PostgreSQL both go through."""
    import concurrent.futures

    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        runs = list(pool.map(lambda _: api.trigger({"month": MONTH, "poll_interval": 1}), range(2)))
        seconds = time.monotonic() - started
    assert seconds < 30 and len({run["dag_run_id"] for run in runs}) == 2, (seconds, runs)
    for run in runs:  # the month's job is shared: one submits or reuses, the other joins or reuses
        assert api.finished(run["dag_run_id"], timeout_s=480)["state"] == "success"


HISTORY_DAG_ID = "monthly_predictions_history"


def test_a_published_month_runs_the_history_dag_for_exactly_that_month(stack, azurite):
    """The published month is an asset event partitioned by the month; the downstream DAG runs for that key."""
    from azure.storage.blob import BlobServiceClient

    from batch_scoring.history import HISTORY_FILE
    from batch_scoring.publish import read_manifest

    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause(HISTORY_DAG_ID)
    api.unpause()
    run = api.trigger({"month": MONTH, "poll_interval": 1})
    assert api.finished(run["dag_run_id"], timeout_s=480)["state"] == "success"
    history = api.wait_for(lambda: [r for r in api.runs(HISTORY_DAG_ID) if r["state"] in ("success", "failed")],
                           180, "no history run followed the published month")
    assert {(r["partition_key"], r["state"]) for r in history} == {(MONTH, "success")}, history
    predictions = BlobServiceClient.from_connection_string(azurite.connection_string) \
        .get_container_client("predictions")
    table = predictions.download_blob(HISTORY_FILE).readall().decode()
    counts = read_manifest(predictions, MONTH)["counts"]
    assert table.splitlines()[1:] and all(line.startswith(f"{MONTH},") for line in table.splitlines()[1:]), table
    assert f",{counts['inputs']},{counts['scored']},{counts['errors']}," in table


def test_a_misspelt_configuration_key_fails_the_run_at_its_plan_naming_the_key(stack):
    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause()
    run = api.trigger({"mnth": MONTH})
    assert api.finished(run["dag_run_id"])["state"] == "failed"
    assert api.task_state(run["dag_run_id"], "plan_run") == "failed"
    assert "unknown run configuration key(s) 'mnth'; known: " in api.task_log(run["dag_run_id"], "plan_run")
    assert api.task_state(run["dag_run_id"], "check_month_folder") != "success"  # nothing was scored


def _backfill_runs(api: Api, months: tuple[str, ...]) -> list[dict]:
    return [r for r in api.runs() if r["run_type"] == "backfill" and r["partition_key"] in months]


def _backfill(api: Api, first_days: tuple[str, str], months: tuple[str, ...], conf: dict) -> tuple[dict, list[dict]]:
    """A backfill from the 1st of one month to the 1st of another, as the UI's dialog sends it; its runs."""
    backfill = api._call("/api/v2/backfills", "POST", {
        "dag_id": DAG_ID, "from_date": f"{first_days[0]}T00:00:00Z", "to_date": f"{first_days[1]}T00:00:00Z",
        "dag_run_conf": conf, "max_active_runs": 2})
    runs = api.wait_for(lambda: len(runs := _backfill_runs(api, months)) == len(months) and runs, 120,
                        f"backfill {backfill['id']} did not create a run per month")
    return backfill, runs


def _backfill_done(api: Api, backfill: dict, timeout_s: float = 300) -> None:
    """A DAG takes one backfill at a time: the next is refused (409) while this one is active."""
    api.wait_for(lambda: api._call(f"/api/v2/backfills/{backfill['id']}").get("completed_at"), timeout_s,
                 f"backfill {backfill['id']} did not complete")


def test_a_backfill_of_two_months_scores_and_publishes_each_month(stack, azurite):
    """Through the scheduler, not a dry run: from the 1st of M1 to the 1st of M2 is one run per month, each
    publishing its own month's files."""
    from azure.storage.blob import BlobServiceClient

    from batch_scoring.publish import read_manifest

    months, images_per_month = ("202508", "202509"), 12
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    images = service.get_container_client("images")
    for month in months:
        for index in range(images_per_month):
            images.upload_blob(f"{month}/backfill/{index:02d}.png", image_bytes("PNG", size=(40 + index, 40)),
                               overwrite=True)
        images.upload_blob(f"{month}/{MONTH_MARKER}", b"", overwrite=True)
    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause()
    backfill, runs = _backfill(api, ("2025-08-01", "2025-09-01"), months, {"poll_interval": 1})
    finished = {run["partition_key"]: api.finished(run["dag_run_id"], timeout_s=480) for run in runs}
    assert {month: run["state"] for month, run in finished.items()} == {month: "success" for month in months}
    predictions = service.get_container_client("predictions")
    for month in months:
        manifest = read_manifest(predictions, month)
        assert (manifest["month"], manifest["run_id"]) == (month, finished[month]["dag_run_id"])
        assert manifest["counts"] == {"inputs": images_per_month, "scored": images_per_month, "errors": 0}
    _backfill_done(api, backfill)


def test_a_backfill_given_a_month_refuses_it_in_every_interval(stack):
    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause()
    _backfill_run, runs = _backfill(api, ("2025-11-01", "2025-12-01"), ("202511", "202512"), {"month": "202607"})
    for run in runs:
        assert api.finished(run["dag_run_id"])["state"] == "failed"
        log = api.task_log(run["dag_run_id"], "plan_run")
        assert (f"the run is partition {run['partition_key']} but its configuration asks for month 202607; leave "
                f"'month' empty (a backfill scores each of its months)") in log, log[-2000:]
    assert sorted(run["partition_key"] for run in runs) == ["202511", "202512"]  # the months of the range


def test_a_month_not_done_by_its_deadline_is_one_message_from_the_deadline_alert(stack, mailbox, azurite):
    """Airflow's Deadline Alert, through the scheduler and the triggerer: a month still uploading at its deadline
    is reported once, with the month and the reason, to the default recipients."""
    from azure.storage.blob import BlobServiceClient

    box = mailbox
    url, password = stack
    api = Api(url, password)
    api.wait_dag_visible()
    api.unpause()
    month = "202401"
    images = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("images")
    images.upload_blob(f"{month}/only.png", image_bytes("PNG"), overwrite=True)  # no marker: it waits
    run = api.trigger({"month": month, "completeness_timeout_hours": 0.1})
    late = api.wait_for(lambda: [s for s in box.subjects() if s.startswith(f"month {month}: deadline missed: ")],
                        DEADLINE_S + 150, f"no deadline message for {month}: {box.subjects()}")
    assert len(late) == 1 and "not published by" in late[0], late
    assert api.run(run["dag_run_id"])["state"] == "running"  # the alert came while the month still waited


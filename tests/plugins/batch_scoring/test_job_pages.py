"""The embedded default's job pages, served by the plugin's FastAPI app (as Airflow's API server mounts it)."""

import json

from fastapi.testclient import TestClient

import batch_scoring.job_pages as job_pages
from batch_scoring.job_pages import URL_PREFIX, app, job_page_base
from devstack.airflow_env import connections
from scoring.atomic_write import write_json

CONNECTION_STRING = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                     "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")


def _client(tmp_path, monkeypatch, *, logged_in: bool = True) -> TestClient:
    """The app as the API server mounts it; `logged_in`: as a user the auth manager lets read the DAG's logs
    (the refusal itself goes through the real API server in the browser test's stack)."""
    for name, value in connections(CONNECTION_STRING, tmp_path, api_url="http://127.0.0.1:8080").items():
        monkeypatch.setenv(name, value)
    if logged_in:
        monkeypatch.setitem(app.dependency_overrides, job_pages._logged_in_user, lambda: "reader")
        monkeypatch.setattr(job_pages, "_authorize", lambda request, user, info: None)
    return TestClient(app)


def test_without_an_airflow_token_no_job_page_or_log_is_shown(tmp_path, monkeypatch):
    _job(tmp_path, "monthly-batch-scoring-202610", {"status": "Running"}, ["secret path /data/x"])
    client = _client(tmp_path, monkeypatch, logged_in=False)
    for path in ("/jobs/monthly-batch-scoring-202610", "/jobs/monthly-batch-scoring-202610/log", "/jobs/nope"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert "secret path" not in answer.text


def _job(tmp_path, name: str, status: dict, log_lines: list[str]) -> None:
    job_dir = tmp_path / "jobs" / name
    write_json(job_dir / "status.json", {"name": name, **status})
    write_json(job_dir / "spec.json", {"tags": {"month": "202610"}})
    (job_dir / "job.log").write_text("".join(f"{line}\n" for line in log_lines), encoding="utf-8")


def test_the_link_prefix_is_where_the_app_is_mounted():
    assert job_page_base("http://127.0.0.1:8080/") == f"http://127.0.0.1:8080{URL_PREFIX}/jobs"
    assert json.loads(connections(CONNECTION_STRING, "/w", api_url="http://h:1")["AIRFLOW_CONN_AZURE_ML_DEFAULT"])[
        "extra"]["job_page_url"] == "http://h:1/batch-scoring/jobs"


def test_a_job_page_shows_status_summary_and_the_end_of_its_log(tmp_path, monkeypatch):
    _job(tmp_path, "monthly-batch-scoring-202610",
         {"status": "Completed", "started_at": 100.0, "finished_at": 110.0,
          "counts": {"inputs": 305, "scored": 300, "errors": 5}},
         [f"line {index} <b>" for index in range(500)])
    page = _client(tmp_path, monkeypatch).get("/jobs/monthly-batch-scoring-202610")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Completed" in page.text and "305 images, 300 scored, 5 errors; in 10.0s (30.5 img/s)" in page.text
    assert "line 499 &lt;b&gt;" in page.text and "line 299 " not in page.text  # the last 200 lines, escaped
    assert "month=202610" in page.text
    whole = _client(tmp_path, monkeypatch).get("/jobs/monthly-batch-scoring-202610/log")
    assert whole.text.count("\n") == 500 and whole.headers["content-type"].startswith("text/plain")


def test_unknown_or_unsafe_job_names_are_404s(tmp_path, monkeypatch):
    client = _client(tmp_path, monkeypatch)
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/jobs/..%2F..%2Fetc").status_code == 404
    assert client.get("/jobs/a..b/log").status_code == 404


def test_a_running_jobs_page_refreshes_itself_and_links_back_to_its_run(tmp_path, monkeypatch):
    name = "monthly-batch-scoring-202610"
    _job(tmp_path, name, {"status": "Running"}, ["scoring"])
    write_json(tmp_path / "jobs" / name / "spec.json",
               {"tags": {"month": "202610", "dag_id": "monthly_batch_scoring", "run_id": "manual__2026-11-02"}})
    client = _client(tmp_path, monkeypatch)
    page = client.get(f"/jobs/{name}").text
    assert "<meta http-equiv='refresh' content='5'>" in page
    assert "href='/dags/monthly_batch_scoring/runs/manual__2026-11-02'" in page
    assert "href='/dags/monthly_batch_scoring/runs/manual__2026-11-02/tasks/validate_and_publish'" in page
    write_json(tmp_path / "jobs" / name / "status.json", {"name": name, "status": "Completed"})
    assert "http-equiv='refresh'" not in client.get(f"/jobs/{name}").text  # a finished job's page stays put

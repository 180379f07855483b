"""The embedded default's "Studio": a job page served over http by Airflow's own API server.

Mounted by the plugin at `/batch-scoring`, so the operators' *Azure ML Studio*
link opens `http://<airflow>/batch-scoring/jobs/<job name>` on the embedded
default as it opens ml.azure.com on a workspace: the job's status, progress,
counts and duration from its status data, links back to the Airflow run and its
publish step, then its log (`…/log` for the whole file); it refreshes itself
while the job runs. Read-only; it answers for the local backend of one Airflow
connection, and only to a logged-in user who may read the logs of the DAG that
submitted the job (the API server's own authentication and auth manager).
"""

from __future__ import annotations

import html
from collections import deque
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from batch_scoring.run_links import run_path

URL_PREFIX = "/batch-scoring"
JOBS_PATH = "/jobs"
AZURE_ML_CONN_ID = "azure_ml_default"
_LOG_TAIL_LINES = 200
_REFRESH_S = 5  # while the job runs
DAG_TAG = "dag_id"  # the submitting DAG, set by the submit operator

app = FastAPI(title="Batch scoring jobs (embedded default)")


def job_page_base(api_url: str) -> str:
    """Where the job pages of an Airflow API server at `api_url` live (the local backend's link prefix)."""
    return f"{api_url.rstrip('/')}{URL_PREFIX}{JOBS_PATH}"


def _backend():
    from airflow.models.connection import Connection  # the API server reads connections from its own secrets

    from batch_scoring.hooks.azure_ml import LOCAL_BACKEND, local_backend_from_extras

    connection = Connection.get_connection_from_secrets(AZURE_ML_CONN_ID)
    extras = connection.extra_dejson
    if extras.get("backend") != LOCAL_BACKEND:
        raise HTTPException(404, f"connection {AZURE_ML_CONN_ID} is a real workspace: open the job in Azure ML Studio")

    def storage_extras(conn_id: str) -> dict:
        return Connection.get_connection_from_secrets(conn_id).extra_dejson

    return local_backend_from_extras(AZURE_ML_CONN_ID, extras, storage_extras)


def _job(name: str):
    from batch_scoring.backends.base import BackendError

    backend = _backend()  # the workspace refuses names that could leave its jobs folder
    try:
        return backend, backend.get_job(name)
    except BackendError as error:
        raise HTTPException(404, str(error)) from None


async def _logged_in_user(request: Request) -> Any:
    """The user of the request's Airflow token (the UI's cookie, or a bearer token); 401 without one. Airflow's
    security module is imported here, not at the top: every Airflow process loads this plugin."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


def _authorize(request: Request, user: Any, info) -> None:
    """403 unless the user may read the task logs of the DAG that submitted the job."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    requires_access_dag("GET", DagAccessEntity.TASK_LOGS, param_dag_id=info.tags.get(DAG_TAG))(request, user)


def _links(info) -> str:
    """Back to the Airflow run that submitted the job and to its publish step (the report and manifest)."""
    dag_id, run_id = info.tags.get(DAG_TAG), info.tags.get("run_id")
    if not (dag_id and run_id):
        return ""
    run = run_path(dag_id, run_id)
    return (f"<p><a href='{html.escape(run)}'>Airflow run {html.escape(run_id)}</a> · "
            f"<a href='{html.escape(run)}/tasks/validate_and_publish'>publish step (report.html, manifest)</a></p>")


@app.get(JOBS_PATH + "/{name}", response_class=HTMLResponse)
def job_page(name: str, request: Request, user: Any = Depends(_logged_in_user)) -> str:
    from batch_scoring.job_watch import job_summary, still_running

    backend, info = _job(name)
    _authorize(request, user, info)
    state = job_summary(info) if info.terminal else still_running(info)
    log_path = backend.job_log(name)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        tail = "".join(deque(log, maxlen=_LOG_TAIL_LINES))
    rows = [("status", info.status), ("state", state), ("error", info.error or "-"),
            ("tags", ", ".join(f"{key}={value}" for key, value in sorted(info.tags.items())) or "-")]
    table = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>" for key, value in rows)
    refresh = "" if info.terminal else f"<meta http-equiv='refresh' content='{_REFRESH_S}'>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{refresh}"
            f"<title>Job {html.escape(name)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2rem}th{text-align:left;padding-right:1rem}"
            "pre{background:#f6f6f6;padding:1rem;overflow:auto}</style></head><body>"
            f"<h1>Job {html.escape(name)}</h1>{_links(info)}<table>{table}</table>"
            f"<h2>Job log (last {_LOG_TAIL_LINES} lines; <a href='{html.escape(name)}/log'>whole log</a>)</h2>"
            f"<pre id='job-log'>{html.escape(tail)}</pre></body></html>")


@app.get(JOBS_PATH + "/{name}/log", response_class=PlainTextResponse)
def job_log(name: str, request: Request, user: Any = Depends(_logged_in_user)) -> str:
    backend, info = _job(name)
    _authorize(request, user, info)
    return backend.job_log(name).read_text(encoding="utf-8", errors="replace")

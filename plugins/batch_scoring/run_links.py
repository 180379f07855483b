"""Where a DAG run is in Airflow's UI: its path, and its address under the API server's base URL."""

from __future__ import annotations

import urllib.parse


def run_path(dag_id: str, run_id: str | None) -> str:
    return f"/dags/{urllib.parse.quote(dag_id)}/runs/{urllib.parse.quote(str(run_id or ''), safe='')}"


def run_url(dag_id: str, run_id: str | None) -> str:
    """The run's page as mail links it: `[api] base_url`, the address people open Airflow at."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/") + run_path(dag_id, run_id)

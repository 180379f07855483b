"""The environment every Airflow command of the embedded default runs with.

Everything lives in the clone: AIRFLOW_HOME in `.airflow/`, the local Azure ML
workspace in `.state/localml/`. Connections are environment variables in
Airflow's JSON format, so no secret is written to a file or the metadata DB.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from devstack.azurite import Azurite

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "plugins"))  # as Airflow puts its plugins folder on sys.path


DEFAULT_API_URL = "http://127.0.0.1:8080"


# SQLite takes one writer at a time; its default 5 s wait turned busy moments (scheduler, API server and a
# triggered run writing together on a loaded machine) into "database is locked" and a dead scheduler loop.
SQLITE_CONNECT_ARGS = {"timeout": 60}


def airflow_env(azurite: Azurite, *, state_dir: Path, airflow_home: Path, base: dict[str, str] | None = None,
                api_url: str = DEFAULT_API_URL, database_url: str | None = None,
                deadline_alerts: bool = True) -> dict[str, str]:
    """Airflow's environment over the embedded default; `database_url`: a PostgreSQL metadata database
    (`devstack.postgres`) for the stacks the scheduler drives, else SQLite in `airflow_home`.

    `deadline_alerts=False` for `airflow dags test`: in Airflow 3.3.2 it cannot finish a run of a DAG with a
    Deadline Alert (it looks the alert up by an id it never wrote, `'dict' object has no attribute 'hex'`),
    so the DAG's deadline is switched off there (`BATCH_SCORING_PUBLISH_DEADLINE_H=0`); the scheduler keeps it."""
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(os.sys.executable).parent)
    env.update({
        "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "plugins")]),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url or f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **connections(azurite.connection_string, state_dir / "localml", api_url=api_url),
    })
    if not env.get("AIRFLOW__OPENLINEAGE__TRANSPORT"):  # a transport of one's own (Marquez, Purview) wins
        env.update(lineage_env(state_dir))
    if not deadline_alerts:
        env["BATCH_SCORING_PUBLISH_DEADLINE_H"] = "0"
    if database_url is None:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "devstack.airflow_env.SQLITE_CONNECT_ARGS"
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = "devstack.airflow_env.SQLITE_CONNECT_ARGS"
    else:
        env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", None)
        env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC", None)
    return env


LINEAGE_NAMESPACE = "monthly-batch-scoring"


def lineage_file(state_dir: Path) -> Path:
    return state_dir / "openlineage" / "events.jsonl"


def lineage_env(state_dir: Path) -> dict[str, str]:
    """OpenLineage to a file in the state folder, one JSON event per line."""
    lineage_file(state_dir).parent.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": LINEAGE_NAMESPACE,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage_file(state_dir)), "append": True}),
    }


def connections(storage_connection_string: str, workspace_dir: Path, *, api_url: str | None = None) -> dict[str, str]:
    """The embedded default's two Airflow connections, as the environment variables Airflow reads.

    `api_url`: the Airflow API server whose job pages the job links open (none: links are log file paths)."""
    from batch_scoring.job_pages import job_page_base  # light: FastAPI only

    local = {"backend": "local", "workspace_dir": str(workspace_dir), "wasb_conn_id": "wasb_default"}
    if api_url:
        local["job_page_url"] = job_page_base(api_url)
    return {
        "AIRFLOW_CONN_WASB_DEFAULT": json.dumps({
            "conn_type": "wasb",
            "extra": {"connection_string": storage_connection_string},
        }),
        "AIRFLOW_CONN_AZURE_ML_DEFAULT": json.dumps({
            "conn_type": "azure_ml",
            "extra": local,
        }),
    }

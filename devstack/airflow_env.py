"""The environment every Airflow command of the embedded default runs with.

Everything lives in the clone: AIRFLOW_HOME in `.airflow/`, the local Azure ML
workspace in `.state/localml/`. Connections are environment variables in
Airflow's JSON format, so no secret is written to a file or the metadata DB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from devstack.azurite import Azurite

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def airflow_env(azurite: Azurite, *, state_dir: Path, airflow_home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
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
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **connections(azurite.connection_string, state_dir / "localml"),
    })
    return env


def connections(storage_connection_string: str, workspace_dir: Path) -> dict[str, str]:
    """The embedded default's two Airflow connections, as the environment variables Airflow reads."""
    return {
        "AIRFLOW_CONN_WASB_DEFAULT": json.dumps({
            "conn_type": "wasb",
            "extra": {"connection_string": storage_connection_string},
        }),
        "AIRFLOW_CONN_AZURE_ML_DEFAULT": json.dumps({
            "conn_type": "azure_ml",
            "extra": {"backend": "local", "workspace_dir": str(workspace_dir), "wasb_conn_id": "wasb_default"},
        }),
    }

"""The compose stack's seed: a month into the blob store the connection names, the model into its registry."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _seed(env_extra):
    return subprocess.run([sys.executable, "-m", "devstack.seed", "--month", "202607"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env_extra})


def test_seed_uploads_the_month_and_keeps_a_registered_model(tmp_path, azurite, blob_service, model_dir):
    shutil.copytree(model_dir, tmp_path / "models" / "shapes-classifier" / "1")
    result = _seed({
        "AIRFLOW_CONN_WASB_DEFAULT": json.dumps({"conn_type": "wasb",
                                                 "extra": {"connection_string": azurite.connection_string}}),
        "AIRFLOW_CONN_AZURE_ML_DEFAULT": json.dumps({"conn_type": "azure_ml",
                                                     "extra": {"backend": "local", "workspace_dir": str(tmp_path)}}),
    })
    assert result.returncode == 0, result.stderr[-2000:]
    names = [b.name for b in blob_service.get_container_client("images").list_blobs(name_starts_with="202607/")]
    assert len(names) == 305 + 1 and "202607/notes.txt" in names and "202607/_SUCCESS" in names  # + the marker
    assert "already registered" in result.stderr


def test_seed_without_connections_says_what_is_missing():
    result = _seed({"AIRFLOW_CONN_WASB_DEFAULT": "", "AIRFLOW_CONN_AZURE_ML_DEFAULT": ""})
    assert result.returncode != 0
    assert "AIRFLOW_CONN_WASB_DEFAULT is not set" in result.stderr

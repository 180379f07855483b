"""Every DAG file imports cleanly, fast, and without torch or azure.ai.ml at top level."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY_MODULES = ("torch", "torchvision", "azure.ai.ml")

_PROBE = """
import json, runpy, sys, time
started = time.monotonic()
namespace = runpy.run_path(sys.argv[1])
from airflow.sdk import DAG
dags = [v for v in namespace.values() if isinstance(v, DAG)]
print(json.dumps({
    "dags": [d.dag_id for d in dags],
    "heavy": [m for m in %r if m in sys.modules],
    "seconds": time.monotonic() - started,
    "tags": {d.dag_id: sorted(d.tags) for d in dags},
    "retries": {d.dag_id: [t.retries for t in d.tasks] for d in dags},
}))
""" % (HEAVY_MODULES,)


def _probe(dag_file: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "plugins")])}
    result = subprocess.run([sys.executable, "-c", _PROBE, str(dag_file)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{dag_file.name} does not import:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_there_are_dag_files():
    assert DAG_FILES


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_without_heavy_modules(dag_file):
    found = _probe(dag_file)
    assert found["dags"], f"{dag_file.name} defines no DAG"
    assert found["heavy"] == [], f"{dag_file.name} imports {found['heavy']} at top level: import them inside tasks"
    for dag_id, tags in found["tags"].items():
        assert tags, f"{dag_file.name}: DAG {dag_id} has no tags"
    for dag_id, retries in found["retries"].items():
        assert all(r >= 1 for r in retries), f"{dag_file.name}: every task of {dag_id} should retry"

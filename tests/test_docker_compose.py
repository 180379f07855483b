"""docker-compose.yaml parses with Docker Compose v2 itself and has the Airflow 3 shape."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LONG_RUNNING = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                "postgres", "azurite")


def _compose_command() -> list[str]:
    bundled = PROJECT_ROOT / "tools" / "compose" / "docker-compose"
    if bundled.exists():
        return [str(bundled)]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no Docker Compose: run `make test` (it fetches the compose binary) or install docker compose")


@pytest.fixture(scope="module")
def config() -> dict:
    result = subprocess.run(
        [*_compose_command(), "-f", str(PROJECT_ROOT / "docker-compose.yaml"), "config", "--format", "json"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_airflow_3_services_are_all_there(config):
    assert set(config["services"]) == {*LONG_RUNNING, "airflow-init"}


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_healthchecks(config, service):
    assert config["services"][service]["healthcheck"]["test"]


def test_airflow_services_share_one_image_and_know_the_execution_api(config):
    airflow = {name: svc for name, svc in config["services"].items() if name.startswith("airflow-")}
    assert len({svc["image"] for svc in airflow.values()}) == 1
    for name, svc in airflow.items():
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert json.loads(env["AIRFLOW_CONN_AZURE_ML_DEFAULT"])["conn_type"] == "azure_ml"
        assert json.loads(env["AIRFLOW_CONN_WASB_DEFAULT"])["extra"]["connection_string"]


def test_services_wait_for_the_database_migration(config):
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        depends = config["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name


def test_published_ports_listen_on_loopback_only(config):
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name

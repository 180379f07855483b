"""`dag_job_img_s`: the bench images as a month in Azurite, scored by the local backend through the DAG's own job.

The same path a scheduled run takes between "register the data asset" and "merged
CSVs", without Airflow's scheduling: the submit operator with the DAG's default
form values builds the job, the local backend runs it (download from Azurite,
workers, merge), and the clock stops when the job is Completed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

MONTH = "209901"
CONTAINER = "bench-images"
PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def unavailable() -> str | None:
    """Why this host cannot run the DAG's job (a GPU host without Airflow, the Azure SDK or Azurite), or None."""
    from devstack.azurite import AZURITE_BIN

    for module in ("airflow", "azure.storage.blob"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        except ModuleNotFoundError:
            return f"{module} is not installed"
    if not AZURITE_BIN.exists():
        return f"Azurite is not installed ({AZURITE_BIN})"
    return None


class _TaskInstance:
    def xcom_push(self, key, value):
        pass


def dag_default_settings() -> dict:
    """The job settings a run gets when nobody touches the trigger form."""
    dag_module = importlib.import_module("dags.monthly_batch_scoring")
    dag = dag_module.monthly_batch_scoring_dag
    return {name: dag.params[name] for name in dag_module.JOB_PARAMS}


def upload_month(connection_string: str, files: list[Path]) -> None:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(CONTAINER)
    if not container.exists():
        container.create_container()

    def put(path: Path) -> None:
        with open(path, "rb") as data:
            container.upload_blob(f"{MONTH}/{path.name}", data, overwrite=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, files))


def dag_job_img_s(files: list[Path], model_dir: Path, state: Path) -> tuple[float, dict]:
    """(img/s from submit to Completed, the job's counts and settings); Azurite is started and stopped here."""
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))  # as Airflow puts its plugins folder on sys.path
    from batch_scoring.hooks.azure_ml import AzureMLHook
    from batch_scoring.operators.azure_ml import (
        AzureMLEnsureComputeOperator,
        AzureMLRegisterDataAssetOperator,
        AzureMLSubmitScoringJobOperator,
    )
    from devstack import azurite
    from devstack.airflow_env import connections

    azurite_dir = state / "azurite"
    service = azurite.start(azurite_dir, port=azurite.free_port())
    try:
        upload_month(service.connection_string, files)
        workspace = state / "dag-job-workspace"
        shutil.rmtree(workspace, ignore_errors=True)
        shutil.copytree(model_dir, workspace / "models" / "bench" / "1")
        # The connections `make demo` sets: the operators build their hook and backend from them, as in a task.
        os.environ.update(connections(service.connection_string, workspace))
        backend = AzureMLHook().backend
        context = {"ti": _TaskInstance(), "dag": SimpleNamespace(dag_id="monthly_batch_scoring")}
        settings = dag_default_settings()
        operators = [
            AzureMLRegisterDataAssetOperator(task_id="register_data_asset", name="monthly-images", version=MONTH,
                                             path=f"azureml://datastores/{CONTAINER}/paths/{MONTH}/"),
            AzureMLEnsureComputeOperator(task_id="ensure_compute", compute_name="local-pool"),
            AzureMLSubmitScoringJobOperator(
                task_id="submit_scoring_job", job_name=f"bench-{MONTH}", month=MONTH,
                data_asset_name="monthly-images", data_asset_version=MONTH, model_name="bench", model_version="1",
                compute_name="local-pool", job_settings=settings),
        ]
        operators[0].execute(context)
        operators[1].execute(context)
        started = time.perf_counter()
        name = operators[2].execute(context)
        info = backend.get_job(name)
        while not info.terminal:
            time.sleep(0.05)
            info = backend.get_job(name)
        elapsed = time.perf_counter() - started
        if info.status != "Completed":
            raise RuntimeError(f"the bench's DAG job ended {info.status}: {info.error}")
        counts = info.details["counts"]
        job_log = backend.job_log(name).read_bytes()
        return counts["inputs"] / elapsed, {**counts, "seconds": round(elapsed, 2),
                                            "job_log_lines": job_log.count(b"\n"),
                                            "job_log_bytes_per_image": round(len(job_log) / counts["inputs"], 1),
                                            "profile": info.details["progress"].get("profile"),
                                            "settings": settings,
                                            # After the job, so that it does not warm anything the job then reads.
                                            "fetch_alone": fetch_cost(service, azurite_dir / "azurite.pid", state)}
    finally:
        azurite.stop(azurite_dir)


def fetch_cost(service, pidfile: Path, state: Path) -> dict:
    """What fetching the month costs by itself: wall time, this process's CPU (listing and GETs) and Azurite's."""
    import psutil

    from scoring.blob_inputs import container_client, fetch_prefix

    emulator = psutil.Process(int(pidfile.read_text().strip()))

    def emulator_cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in [emulator, *emulator.children(recursive=True)])

    destination = state / "fetch-alone" / "in"
    shutil.rmtree(destination.parent, ignore_errors=True)
    before, emulator_before, started = os.times(), emulator_cpu(), time.perf_counter()
    items = list(fetch_prefix(container_client(service.connection_string, CONTAINER), f"{MONTH}/", destination))
    wall, after, emulator_after = time.perf_counter() - started, os.times(), emulator_cpu()
    size = sum(path.stat().st_size for path in destination.rglob("*") if path.is_file())
    shutil.rmtree(destination.parent, ignore_errors=True)
    return {"blobs": len(items), "mb": round(size / 1e6), "seconds": round(wall, 2),
            "client_cpu_s": round(after.user + after.system - before.user - before.system, 2),
            "azurite_cpu_s": round(emulator_after - emulator_before, 2)}

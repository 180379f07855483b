"""The fault suite's harness: a case's row, the suite's shared state, how a case is run and judged.

A case (`faults/cases.py`) runs what users run and is judged from the CSVs it wrote
(`tally`): every input in exactly one file, no good image among the errors, bad ones
listed with a reason, the exit the case expects.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))  # as Airflow puts its plugins folder on sys.path

OK, ERROR, EITHER = "ok", "error", "either"


@dataclasses.dataclass
class Row:
    case: str
    path: str
    items: int | str = "-"
    scored: int | str = "-"
    errors: int | str = "-"
    missing: int | str = "-"
    duplicated: int | str = "-"
    collateral: int | str = "-"
    exit: str = ""
    passed: bool = False
    note: str = ""


@dataclasses.dataclass
class Suite:
    root: Path
    model_dir: Path
    connection_string: str = ""
    blob_endpoint: str = ""
    rows: list[Row] = dataclasses.field(default_factory=list)


def image(fmt="JPEG", size=(64, 48), mode="RGB", **save) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode in ("RGB", "RGBA") else 128).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def tally(case: str, path: str, expected: dict[str, str], out: Path, exit_text: str, ok_exit: bool,
          note: str = "", extra_check: bool = True) -> Row:
    """Judge a run by its CSVs against the expected fate of every item."""
    predictions, errors = read_rows(out / "predictions.csv"), read_rows(out / "errors.csv")
    scored, failed = [r["image"] for r in predictions], [r["image"] for r in errors]
    everything = scored + failed
    missing = len(set(expected) - set(everything))
    duplicated = len(everything) - len(set(everything))
    collateral = sum(1 for name in failed if expected.get(name) == OK)
    misjudged = sum(1 for name in scored if expected.get(name) == ERROR)
    strangers = len(set(everything) - set(expected))
    passed = ok_exit and extra_check and not (missing or duplicated or collateral or misjudged or strangers)
    if misjudged or strangers:
        note = f"{note}; misjudged {misjudged}, unknown rows {strangers}".strip("; ")
    return Row(case, path, len(expected), len(scored), len(failed), missing, duplicated, collateral, exit_text,
               passed, note)


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scoring", "score", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})})


def one_line_error(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    return bool(lines) and lines[-1].startswith("error: ") and "Traceback" not in result.stderr


# ---- cases on the CLI --------------------------------------------------------------------------------------


def runner_case(suite: Suite, case: str, culprit: str, **settings) -> Row:
    from scoring.items import walk_folder
    from scoring.job_settings import JobSettings
    from scoring.parallel_runner import ParallelJob, run_parallel_job

    folder = suite.root / case / "in"
    folder.mkdir(parents=True)
    names = [f"{index:02d}.jpg" for index in range(15)] + [culprit]
    for name in names:
        (folder / name).write_bytes(image())
    out = suite.root / case / "out"
    job_settings = JobSettings(mini_batch_size=16, max_concurrency_per_instance=1, **settings)
    job = ParallelJob(
        entry_script=PROJECT_ROOT / "faults" / "entry.py", code_root=PROJECT_ROOT, input_root=folder,
        work_dir=suite.root / case / "work", output_dir=out, scoring_key="faults",
        program_arguments=("--model_dir", str(suite.model_dir), "--month", "202610", "--input_root", str(folder),
                           *job_settings.program_arguments()),
        settings=job_settings,
    )
    try:
        run_parallel_job(job, walk_folder(folder))
        exit_text, ok_exit = "completed", True
    except Exception as error:  # noqa: BLE001 - a row says what happened
        exit_text, ok_exit = f"{type(error).__name__}: {error}"[:60], False
    expected = {name: OK for name in names[:-1]} | {culprit: ERROR}
    message = next((r["message"] for r in read_rows(out / "errors.csv") if r["image"] == culprit), "") if ok_exit else ""
    return tally(case.replace("-", " "), "runner", expected, out, exit_text, ok_exit, note=message[:70])


class JobBench:
    """The month's job as the DAG drives it: register, ensure compute, submit, wait, over a local-backend connection."""

    def __init__(self, suite: Suite, name: str, *, connection_string: str | None = None):
        from azure.storage.blob import BlobServiceClient

        from batch_scoring.hooks.azure_ml import AzureMLHook
        from devstack.airflow_env import connections

        self.suite, self.month, self.base = suite, "202610", f"faults-{name}"
        self.container_name = f"f{abs(hash(name)) % 10**8}"
        self.container = BlobServiceClient.from_connection_string(suite.connection_string).create_container(
            self.container_name)
        workspace = suite.root / name / "workspace"
        shutil.copytree(suite.model_dir, workspace / "models" / "m" / "1")
        # A connection of its own, of the shape `make demo` sets: the operators build hook and backend from it.
        self.conn_id = f"faults_{name.replace('-', '_')}"
        env = connections(connection_string or suite.connection_string, workspace)
        os.environ["AIRFLOW_CONN_WASB_DEFAULT"] = env["AIRFLOW_CONN_WASB_DEFAULT"]
        os.environ[f"AIRFLOW_CONN_{self.conn_id.upper()}"] = env["AIRFLOW_CONN_AZURE_ML_DEFAULT"]
        self.backend = AzureMLHook(azure_ml_conn_id=self.conn_id).backend
        self._operate("register")
        self._operate("compute")

    @staticmethod
    def context(pushed: dict, *, try_number: int = 1, run_id: str = "scheduled") -> dict:
        return {"ti": SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value),
                                      try_number=try_number),
                "dag": SimpleNamespace(dag_id="faults"), "run_id": run_id}

    def _operate(self, what: str, **kwargs):
        from batch_scoring.operators.azure_ml import (
            AzureMLEnsureComputeOperator,
            AzureMLRegisterDataAssetOperator,
            AzureMLSubmitScoringJobOperator,
            AzureMLWaitForJobOperator,
        )
        from batch_scoring.month_listing import month_fingerprint

        pushed: dict = {}
        context = self.context(pushed, try_number=kwargs.pop("try_number", 1), run_id=kwargs.pop("run_id", "scheduled"))
        if what == "register":
            operator = AzureMLRegisterDataAssetOperator(
                task_id="register", azure_ml_conn_id=self.conn_id, name="images", version=self.month,
                path=f"azureml://datastores/{self.container_name}/paths/{self.month}/")
        elif what == "compute":
            operator = AzureMLEnsureComputeOperator(task_id="compute", azure_ml_conn_id=self.conn_id,
                                                    compute_name="pool")
        elif what == "submit":
            operator = AzureMLSubmitScoringJobOperator(
                task_id="submit", azure_ml_conn_id=self.conn_id, job_name=self.base, month=self.month,
                data_asset_name="images",
                data_asset_version=self.month, model_name="m", model_version="1", compute_name="pool",
                job_settings={"mini_batch_size": 4, "max_concurrency_per_instance": 1, "error_threshold": -1},
                inputs_fingerprint=month_fingerprint(self.container, self.month)[1])
        else:
            operator = AzureMLWaitForJobOperator(task_id="wait", azure_ml_conn_id=self.conn_id, poll_interval=0.2,
                                                 deferrable=False, **kwargs)
        result = operator.execute(context)
        return result, pushed

    def upload(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.container.upload_blob(f"{self.month}/{name}", data, overwrite=True)

    def score(self) -> tuple[str, dict]:
        """Submit and wait, as one DAG run does; returns (job name, its details)."""
        name, pushed = self._operate("submit")
        self._operate("wait", job_name=name, job_spec=pushed["job_spec"])
        return name, self.backend.get_job(name).details

    def outputs(self, name: str) -> Path:
        return self.backend.workspace.job_dir(name) / "outputs"


def make_model(folder: Path) -> Path:
    """An untrained ResNet-18 over the demo labels at 64 px: accounting, not accuracy, is on trial here."""
    import torch

    from devstack.sample_month import LABELS
    from devstack.train_model import ARCHITECTURE, PREPROCESSING
    from scoring.model import ModelMetadata, build_model, save_model_folder

    torch.manual_seed(0)
    model_dir = folder / "model"
    save_model_folder(model_dir, build_model(ARCHITECTURE, len(LABELS)),
                      ModelMetadata(name="m", version="1", architecture=ARCHITECTURE, labels=LABELS,
                                    preprocessing=PREPROCESSING))
    return model_dir


def print_table(rows: list[Row]) -> None:
    columns = ("case", "path", "items", "scored", "errors", "missing", "duplicated", "collateral", "exit", "result")
    cells = [[str(getattr(r, c)) if c != "result" else ("PASS" if r.passed else "FAIL") for c in columns]
             for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("-+-".join("-" * w for w in widths))
    for line, row in zip(cells, rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + (f"   {row.note}" if row.note else ""))
    print(f"{sum(r.passed for r in rows)} passed, {sum(not r.passed for r in rows)} failed")

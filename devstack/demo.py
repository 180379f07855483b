"""`make demo`: score one sample month end to end on the embedded default, then show the result.

Starts Azurite, uploads a generated month, trains and registers the demo model
(once), runs the DAG through Airflow itself (`airflow dags test`), copies the
published month to `demo-output/<YYYYMM>/`, prints a summary, and stops Azurite.

With `--model_name`/`--model_version` (a model put in the local registry with
`make register-model`) and `--images` (a folder of your own images), the same run
scores your month with your model; the demo model's accuracy check is then skipped.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from devstack import azurite as azurite_service
from devstack.airflow_env import DEFAULT_API_URL, PROJECT_ROOT, airflow_env
from devstack.sample_month import write_month
from devstack.train_model import DEMO_REGISTRY, MODEL_NAME, MODEL_VERSION, ensure_registered
from scoring.items import MONTH_MARKER
from scoring.month import validate_month

log = logging.getLogger("demo")
DAG_ID = "monthly_batch_scoring"
MIN_ACCURACY = 0.90  # the demo model must reach this on the demo month, or the demo fails
STATE = PROJECT_ROOT / ".state"
AIRFLOW_HOME = PROJECT_ROOT / ".airflow"


def dags_test_command(month: str, now: dt.datetime, model: tuple[str, str] = (MODEL_NAME, MODEL_VERSION)) -> list[str]:
    """`airflow dags test` for `month`, due now: `dags test` starts its run at the logical date it is given, so a
    date in the past would show a run of weeks; the month travels in the run's configuration, as from the form."""
    conf = json.dumps({"month": month, "poll_interval": 3,  # a short poll keeps the demo brisk
                       "model_name": model[0], "model_version": model[1]})
    logical_date = now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()
    return [sys.executable, "-m", "airflow", "dags", "test", "-c", conf, DAG_ID, logical_date]


def upload_month(client: BlobServiceClient, month_folder: Path, month: str, container: str = "images") -> int:
    """Upload the month's files that are missing or differ (by MD5), then its completeness marker; returns how
    many files were uploaded. Blobs already there keep their ETags, so a run after a second `make airflow`
    reuses every row."""
    try:
        client.create_container(container)
    except ResourceExistsError:
        pass
    container_client = client.get_container_client(container)
    present = {blob.name: bytes(blob.content_settings.content_md5 or b"")
               for blob in container_client.list_blobs(name_starts_with=f"{month}/")}
    uploaded = 0
    for path in sorted(path for path in month_folder.rglob("*") if path.is_file()):
        name = f"{month}/{path.relative_to(month_folder).as_posix()}"
        data = path.read_bytes()
        if present.get(name) == hashlib.md5(data, usedforsecurity=False).digest():
            continue
        container_client.upload_blob(name, data, overwrite=True)
        uploaded += 1
    if f"{month}/{MONTH_MARKER}" not in present:  # written last, as an uploader says the month is complete
        container_client.upload_blob(f"{month}/{MONTH_MARKER}", b"")
    return uploaded


# `airflow dags test` fires no scheduler listener: the runs it made get the month note the run-notes listener
# writes (`batch_scoring.run_notes`, the one home of the note), in Airflow's own database.
_NOTE_RUNS = """
from airflow.models import DagRun
from airflow.utils.session import create_session

from batch_scoring.month import MONTHLY_DAG_ID
from batch_scoring.run_notes import on_dag_run_running

with create_session() as session:
    for run in session.query(DagRun).filter(DagRun.dag_id == MONTHLY_DAG_ID):
        if not run.note:
            on_dag_run_running(run, msg="airflow dags test")
"""


def note_runs(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", _NOTE_RUNS], env=env, check=True, stdout=subprocess.DEVNULL)


def download_published(client: BlobServiceClient, month: str, destination: Path, container: str = "predictions") -> None:
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    container_client = client.get_container_client(container)
    for blob in container_client.list_blobs(name_starts_with=f"{month}/"):
        target = destination / blob.name[len(month) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as stream:
            container_client.download_blob(blob.name).readinto(stream)


def accuracy(predictions_csv: Path) -> tuple[float, int]:
    """Top-1 accuracy against the true label in each path (`<label>/<file>`)."""
    with open(predictions_csv, encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if "/" in row["image"]]
    correct = sum(row["image"].split("/", 1)[0] == row["label"] for row in rows)
    return (correct / len(rows) if rows else 0.0), len(rows)


def prepare(client: BlobServiceClient, azurite: azurite_service.Azurite, month: str, *,
            api_url: str = DEFAULT_API_URL, images: Path | None = None, demo_model: bool = True,
            database_url: str | None = None) -> dict[str, str]:
    """The month in Azurite (`images`, else the generated sample), the demo model in the registry unless another
    is used, Airflow DB migrated; returns Airflow's environment."""
    if images is None:
        images = STATE / "sample" / month
        if not images.is_dir():
            write_month(images.parent, month)
    uploaded = upload_month(client, images, month)
    log.info("uploaded %d new or changed files from %s to images/%s/ in Azurite", uploaded, images, month)
    if demo_model:
        ensure_registered(DEMO_REGISTRY, MODEL_NAME, MODEL_VERSION)
    # make demo runs `airflow dags test` (SQLite), make airflow the scheduler (PostgreSQL): only the scheduler
    # can run the DAG's Deadline Alert (see `airflow_env`).
    env = airflow_env(azurite, state_dir=STATE, airflow_home=AIRFLOW_HOME, api_url=api_url, database_url=database_url,
                      deadline_alerts=database_url is not None)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="202610")
    parser.add_argument("--azurite-port", type=int, default=azurite_service.DEFAULT_PORT)
    parser.add_argument("--model_name", default=MODEL_NAME, help="a model in the local registry (make register-model)")
    parser.add_argument("--model_version", default=MODEL_VERSION)
    parser.add_argument("--images", type=Path, default=None, help="a folder of the month's images (default: a "
                                                                  "generated sample month)")
    args = parser.parse_args()
    validate_month(args.month)
    demo_model = (args.model_name, args.model_version) == (MODEL_NAME, MODEL_VERSION)
    if args.images is not None and not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder")
    started = time.monotonic()
    output = PROJECT_ROOT / "demo-output" / args.month

    azurite = azurite_service.start(STATE / "azurite", port=args.azurite_port)
    try:
        client = BlobServiceClient.from_connection_string(azurite.connection_string)
        env = prepare(client, azurite, args.month, images=args.images, demo_model=demo_model)
        command = dags_test_command(args.month, dt.datetime.now(dt.timezone.utc), (args.model_name, args.model_version))
        log.info("running %s for month %s: %s", DAG_ID, args.month, " ".join(command[2:]))
        result = subprocess.run(command, env=env)
        if result.returncode != 0:
            log.error("the DAG run failed (exit %d); read the task logs above", result.returncode)
            return 1
        note_runs(env)

        download_published(client, args.month, output)
    finally:
        azurite_service.stop(STATE / "azurite")

    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    top1, judged = accuracy(output / "predictions.csv")
    counts = manifest["counts"]
    print()
    print(f"Month {args.month} scored with {manifest['model_name']}:{manifest['model_version']} "
          f"(job {manifest['job_name']})")
    print(f"  images  {counts['inputs']}")
    print(f"  scored  {counts['scored']}")
    print(f"  errors  {counts['errors']}  (see errors.csv)")
    if demo_model and args.images is None:
        print(f"  top-1 accuracy {top1:.1%} on {judged} labelled images")
    print(f"  files   {output}/predictions.csv, errors.csv, report.html, manifest.json")
    print(f"  took    {time.monotonic() - started:.0f}s")
    if demo_model and args.images is None and top1 < MIN_ACCURACY:
        print(f"error: top-1 accuracy {top1:.1%} is below {MIN_ACCURACY:.0%}: the demo model is not good enough",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

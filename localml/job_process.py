"""The process of one local job: stream the month in, run the parallel job, record every state change.

`python -m localml.job_process <job folder>`. It writes Running, then
Completed or Failed (with a one-line error) or Canceled (on SIGTERM) into
`status.json`, and its progress into `progress.json`. The month's files and the
finished rows live in the month's folder of the workspace, shared by every
attempt: a resubmitted attempt downloads only what changed and scores only what
has no valid row yet; the downloaded images are removed by the last attempt
to finish (`localml.month_lease`). The job's credential, a read-only signed URL
of the month's container, comes from the environment (LOCALML_STORAGE_CONTAINER_URL),
never from the spec on disk, and is taken out of the environment before any
worker starts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from localml.jobs import OUTPUTS_DIR, SPEC_FILE, STATUS_FILE, STORAGE_ENV
from localml.month_lease import MonthLease
from localml.workspace import read_json
from scoring.atomic_write import write_json
from scoring.job_settings import JobSettings
from scoring.job_states import JobStatus
from scoring.model_metadata import ModelFolderError
from scoring.progress import PROGRESS_FILE

log = logging.getLogger("localml.job")
INPUTS_DIR = "inputs"
ROWS_DIR = "rows"
MODEL_DIR = "model"


class _Canceled(BaseException):
    pass


def _on_sigterm(_signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cancel is enough: let it record its state
    raise _Canceled()


def _set_status(job_dir: Path, status: str, **fields) -> None:
    document = read_json(job_dir / STATUS_FILE) or {}
    document.update(status=status, **fields)
    write_json(job_dir / STATUS_FILE, document)


def run_job(job_dir: Path) -> int:
    container_url = os.environ.pop(STORAGE_ENV, None)  # workers inherit the environment: they need no credential
    spec = read_json(job_dir / SPEC_FILE)
    settings = JobSettings.from_dict(spec["settings"])
    logging.basicConfig(level=settings.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout, force=True)
    # azure-core logs every HTTP request and response at INFO: thousands of lines a month, nothing to act on.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # its DEBUG lines would print the read SAS
    signal.signal(signal.SIGTERM, _on_sigterm)
    _set_status(job_dir, JobStatus.RUNNING)
    log.info("job %s: month %s, model %s:%s, settings %s", spec["name"], spec["month"], spec["model"]["name"],
             spec["model"]["version"], settings.to_dict())

    def publish(snapshot: dict) -> None:
        write_json(job_dir / PROGRESS_FILE, snapshot)

    month_dir = Path(spec["month_dir"])
    lease = MonthLease(month_dir)
    try:
        from scoring.blob_inputs import fetch_prefix
        from scoring.items import StorageUnavailable
        from scoring.model_snapshot import snapshot_model
        from scoring.parallel_runner import ParallelJob, ParallelJobFailed, run_parallel_job
        from scoring.reuse import scoring_key

        # One read of the registered model for the whole job: its workers load this copy, whatever happens to
        # the registry meanwhile, and its rows carry the digest of these bytes.
        model = snapshot_model(Path(spec["model_dir"]), job_dir / MODEL_DIR)
        log.info("model %s:%s copied for the job (sha256 %s)", spec["model"]["name"], spec["model"]["version"],
                 model.digest[:12])
        publish({"phase": "downloading"})
        input_root = month_dir / INPUTS_DIR
        items = fetch_prefix(_container(container_url), spec["input"]["prefix"], input_root,
                             outage_s=settings.storage_timeout)
        job = ParallelJob(
            entry_script=Path(spec["code_root"]) / spec["entry_script"],
            code_root=Path(spec["code_root"]),
            input_root=input_root,
            work_dir=job_dir,
            program_arguments=("--model_dir", str(model.path), *spec["program_arguments"], "--input_root",
                               str(input_root)),
            settings=settings,
            output_dir=job_dir / OUTPUTS_DIR,
            rows_dir=month_dir / ROWS_DIR,
            scoring_key=scoring_key(model, spec["model"]["name"], spec["model"]["version"], spec["month"], settings),
            model_digest=model.digest,
            on_progress=publish,
        )
        result = run_parallel_job(job, items)
    except _Canceled:
        log.warning("job %s canceled", spec["name"])
        _set_status(job_dir, JobStatus.CANCELED, finished_at=time.time())
        logging.shutdown()
        os._exit(143)  # now: download threads and workers go with the process, not after their current file
    except (ParallelJobFailed, StorageUnavailable, ModelFolderError) as error:
        log.error("job %s failed: %s", spec["name"], error)
        _set_status(job_dir, JobStatus.FAILED, error=str(error), finished_at=time.time())
        return 1
    except Exception as error:  # noqa: BLE001 - every failure must end in a recorded state
        log.exception("job %s failed", spec["name"])
        message = " ".join(f"{type(error).__name__}: {error}".split())
        _set_status(job_dir, JobStatus.FAILED, error=message, finished_at=time.time())
        return 1
    # The month's copy has served, unless another attempt still reads it; finished rows stay for a later
    # rescoring of changed files.
    if not lease.remove_if_alone(month_dir / INPUTS_DIR):
        log.info("another attempt of the month still uses its downloaded images: left for it")
    _set_status(job_dir, JobStatus.COMPLETED, finished_at=time.time(), outputs=OUTPUTS_DIR,
                counts={"inputs": result.inputs, "scored": result.scored, "errors": result.errors})
    return 0


def _container(container_url: str | None):
    from scoring.blob_inputs import container_client_from_url

    if not container_url:
        raise RuntimeError(f"{STORAGE_ENV} is not set: the job cannot reach the blob store")
    return container_client_from_url(container_url)


if __name__ == "__main__":
    code = run_job(Path(sys.argv[1]))
    logging.shutdown()
    os._exit(code)  # fetch threads left by a failure must not hold the exit

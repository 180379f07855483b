"""The process of one local job: fetch the month, run the parallel job, record every state change.

`python -m localml.job_process <job folder>`. It writes Running, then
Completed or Failed (with a one-line error) or Canceled (on SIGTERM) into
`status.json`. The blob store's connection string comes from the environment
(LOCALML_STORAGE_CONNECTION_STRING), never from the spec on disk.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from localml.jobs import OUTPUTS_DIR, SPEC_FILE, STATUS_FILE, STORAGE_ENV, JobStatus
from localml.workspace import read_json, write_json
from scoring.blob_inputs import download_prefix
from scoring.job_settings import JobSettings
from scoring.parallel_runner import ParallelJob, ParallelJobFailed, run_parallel_job

log = logging.getLogger("localml.job")


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
    spec = read_json(job_dir / SPEC_FILE)
    settings = JobSettings.from_dict(spec["settings"])
    logging.basicConfig(level=settings.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout, force=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _set_status(job_dir, JobStatus.RUNNING)
    log.info("job %s: month %s, settings %s", spec["name"], spec["month"], settings.to_dict())
    try:
        input_root = job_dir / "inputs" / spec["month"]
        known_failures = _fetch_inputs(spec["input"], input_root)
        job = ParallelJob(
            entry_script=Path(spec["code_root"]) / spec["entry_script"],
            code_root=Path(spec["code_root"]),
            input_root=input_root,
            work_dir=job_dir,
            program_arguments=(*spec["program_arguments"], "--input_root", str(input_root)),
            settings=settings,
            known_failures={item: ("unreadable", why) for item, why in known_failures.items()},
            output_dir=job_dir / OUTPUTS_DIR,
        )
        result = run_parallel_job(job)
    except _Canceled:
        log.warning("job %s canceled", spec["name"])
        _set_status(job_dir, JobStatus.CANCELED, finished_at=time.time())
        return 143
    except ParallelJobFailed as error:
        log.error("job %s failed: %s", spec["name"], error)
        _set_status(job_dir, JobStatus.FAILED, error=str(error), finished_at=time.time())
        return 1
    except Exception as error:  # noqa: BLE001 - every failure must end in a recorded state
        log.exception("job %s failed", spec["name"])
        message = " ".join(f"{type(error).__name__}: {error}".split())
        _set_status(job_dir, JobStatus.FAILED, error=message, finished_at=time.time())
        return 1
    _set_status(job_dir, JobStatus.COMPLETED, finished_at=time.time(), outputs=OUTPUTS_DIR,
                counts={"inputs": result.inputs, "scored": result.scored, "errors": result.errors})
    return 0


def _fetch_inputs(source: dict, destination: Path) -> dict[str, str]:
    from azure.storage.blob import ContainerClient

    connection_string = os.environ.get(STORAGE_ENV)
    if not connection_string:
        raise RuntimeError(f"{STORAGE_ENV} is not set: the job cannot reach the blob store")
    container = ContainerClient.from_connection_string(connection_string, source["container"])
    _count, unsafe = download_prefix(container, source["prefix"], destination)
    return unsafe


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))

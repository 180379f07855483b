"""Jobs of the local workspace: each one a separate process that outlives whoever submitted it.

A job is a folder (`spec.json`, `status.json`, `job.log`, `outputs/`) and a
process in its own session running `python -m localml.job_process <folder>`.
The status file speaks Azure ML's job states, so the Airflow side treats both
backends alike. A job whose process vanished without a final state is Failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from localml.process_group import stop_group
from localml.process_identity import identify, is_alive
from localml.workspace import LocalWorkspace, WorkspaceError, read_json
from scoring.atomic_write import write_json
from scoring.job_states import FINISHED_STATUSES, JobStatus


class JobExists(WorkspaceError):
    pass



SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
PROCESS_FILE = "process.json"
LOG_FILE = "job.log"
OUTPUTS_DIR = "outputs"
# The job's read-only credential for its month's container (a container URL with a read-and-list signature)
# reaches the job process through its environment only; the job process removes it before starting workers.
STORAGE_ENV = "LOCALML_STORAGE_CONTAINER_URL"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What a job process inherits of its submitter's environment: how to run Python and torch, nothing else.
# Airflow's connections (AIRFLOW_CONN_*), account keys and tokens stay behind.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH",
              "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
_INHERITED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "MALLOC_", "TORCH_", "PYTORCH_",
                       "KMP_")


def job_environment(parent: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a job process: the parent's runtime variables, the project on PYTHONPATH, `extra`."""
    env = {name: value for name, value in parent.items()
           if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)}
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def submit(workspace: LocalWorkspace, name: str, spec: dict[str, Any], *, env: dict[str, str] | None = None) -> dict:
    """Create job `name` and start its process; a name is used once, as on Azure ML."""
    job_dir = workspace.job_dir(name)
    try:
        job_dir.mkdir(parents=True)
    except FileExistsError:
        raise JobExists(f"job {name!r} already exists in {workspace.root}; job names are unique") from None
    write_json(job_dir / SPEC_FILE, {**spec, "name": name})
    write_json(job_dir / STATUS_FILE, {"name": name, "status": JobStatus.NOT_STARTED, "submitted_at": time.time()})
    return start(workspace, name, env=env)


def start(workspace: LocalWorkspace, name: str, *, env: dict[str, str] | None = None) -> dict:
    """Start (or restart, after its process was killed) the process of an existing job.

    A restarted job resumes: mini-batches already written are not scored again.
    """
    job_dir = workspace.job_dir(name)
    status = get(workspace, name)
    if status["status"] == JobStatus.COMPLETED:
        return status
    process = read_json(job_dir / PROCESS_FILE)
    if process and _process_alive(process):
        raise WorkspaceError(f"job {name!r} is already running (pid {process['pid']})")
    child_env = job_environment(dict(os.environ), env)
    (job_dir / PROCESS_FILE).unlink(missing_ok=True)
    status = {k: v for k, v in status.items() if k not in ("error", "finished_at")}
    status.update(status=JobStatus.PREPARING, started_at=time.time())
    write_json(job_dir / STATUS_FILE, status)  # before the process: from now on only it writes progress
    with open(job_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "localml.job_process", str(job_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env,
            cwd=PROJECT_ROOT, start_new_session=True,
        )
    write_json(job_dir / PROCESS_FILE, identify(process.pid))
    return status


def get(workspace: LocalWorkspace, name: str) -> dict:
    job_dir = workspace.job_dir(name)
    status = read_json(job_dir / STATUS_FILE)
    if status is None:
        raise WorkspaceError(f"no job named {name!r} in {workspace.root}")
    process = read_json(job_dir / PROCESS_FILE)
    if status["status"] not in FINISHED_STATUSES and process and not _process_alive(process):
        # Re-read: the process may have written its final state just before exiting.
        status = read_json(job_dir / STATUS_FILE)
        if status["status"] not in FINISHED_STATUSES:
            status.update(status=JobStatus.FAILED, finished_at=time.time(),
                          error=f"job process {process['pid']} ended without a final state (killed?); "
                                f"see {job_dir / LOG_FILE}")
            write_json(job_dir / STATUS_FILE, status)
    return status


def cancel(workspace: LocalWorkspace, name: str, *, grace_s: float = 15.0, wait: bool = True) -> dict:
    """Stop the job's process group (SIGTERM, then SIGKILL) and mark it Canceled. `wait=False` only sends
    SIGTERM: the job process marks itself Canceled as it exits (a job that ignored it is found dead later)."""
    job_dir = workspace.job_dir(name)
    status = get(workspace, name)
    if status["status"] in FINISHED_STATUSES:
        return status
    status["status"] = JobStatus.CANCEL_REQUESTED
    write_json(job_dir / STATUS_FILE, status)
    process = read_json(job_dir / PROCESS_FILE)
    if process and _process_alive(process):
        if not wait:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process["pid"], signal.SIGTERM)
            return status
        # The job's workers share its process group: stop them all, not only the job process.
        stop_group(process["pid"], grace_s=grace_s)
    status = read_json(job_dir / STATUS_FILE)
    if status["status"] not in FINISHED_STATUSES:
        status.update(status=JobStatus.CANCELED, finished_at=time.time())
        write_json(job_dir / STATUS_FILE, status)
    return status


def _process_alive(process: dict) -> bool:
    """True while the job's own process runs, by an identity that pid reuse and clock steps cannot fool."""
    return is_alive(process)

"""Start a process in its own group and stop exactly that group, by the id recorded.

Never by name: a pidfile holds the group id, SIGTERM goes to the whole group,
and SIGKILL follows after a grace period (Airflow's children outlive a polite
stop for over a minute). Nothing here matches processes by their command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def start_group(command: Sequence[str], *, pidfile: Path, logfile: Path, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> int:
    """Start `command` as the leader of a new session; returns its process group id."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log_handle:
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True,
        )
    pidfile.write_text(f"{process.pid}\n", encoding="utf-8")
    return process.pid


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts until reaped; reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(pgid: int, *, grace_s: float = 20.0) -> None:
    """SIGTERM the group, repeated every few seconds for `grace_s`, then SIGKILL what is left.

    Repeated because some servers (Azurite) close their listeners on the first
    SIGTERM and only exit on the next.
    """
    deadline = time.monotonic() + grace_s
    next_term = 0.0
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        if time.monotonic() >= next_term:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            next_term = time.monotonic() + 2.0
        time.sleep(0.1)
    log.warning("process group %d outlived SIGTERM for %.0fs; sending SIGKILL", pgid, grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_pidfile(pidfile: Path, *, grace_s: float = 20.0) -> None:
    """Stop the group recorded in `pidfile`, if any, and remove the file."""
    try:
        pgid = int(pidfile.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return
    stop_group(pgid, grace_s=grace_s)
    pidfile.unlink(missing_ok=True)

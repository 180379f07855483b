"""Attempts of one month share its downloaded folder; a lease says who still uses it.

Every job process of the month holds a shared `flock` on the month's lease file
for as long as it runs; the kernel drops it when the process ends, however it
ends, so no clock, pid or heartbeat is involved. The downloaded images are
removed only by a job that can take the lease exclusively, i.e. when no other
attempt of the month is running; a job that starts meanwhile waits for the
removal to finish and downloads afresh.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

LEASE_FILE = ".lease"


class MonthLease:
    def __init__(self, month_dir: Path):
        month_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(month_dir / LEASE_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)  # waits while another job removes the folder

    def remove_if_alone(self, folder: Path) -> bool:
        """Remove `folder` if no other job of the month holds the lease; True when removed."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another attempt uses it; the last one out removes it
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def release(self) -> None:
        os.close(self._fd)

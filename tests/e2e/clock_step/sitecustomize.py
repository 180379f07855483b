"""Loaded by every Python process of a test run that puts this folder on PYTHONPATH: once the file named by
CLOCK_STEP_FILE exists, the boot time psutil computes from the wall clock reads 90 s later, as after a VM
pause or an NTP step. Nothing else changes: processes keep running."""

import os

_flag = os.environ.get("CLOCK_STEP_FILE")
if _flag:
    import psutil._pslinux as _pslinux

    _real_boot_time = _pslinux.boot_time

    def _stepped_boot_time():
        return _real_boot_time() + (90.0 if os.path.exists(_flag) else 0.0)

    _pslinux.boot_time = _stepped_boot_time

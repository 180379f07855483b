"""Who a process is, in terms no clock step can move: pid, boot id and start time in clock ticks since boot.

A pid alone is reused; a start time in wall-clock seconds (what psutil's
`create_time()` returns) is computed from the boot time, which the kernel
derives from the wall clock: a VM paused for minutes or an NTP step moves it,
and a live process would no longer match what was recorded. The kernel's own
record (`/proc/<pid>/stat` field 22, ticks since boot) and the boot id do not
move. Elsewhere than Linux, the start time psutil reports is fixed at start and
is used with a tolerance of a second.
"""

from __future__ import annotations

from pathlib import Path

import psutil

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_FALLBACK_TOLERANCE_S = 1.0


def identify(pid: int) -> dict:
    """The identity of the running process `pid`, as plain values (written to the job's `process.json`)."""
    stat = _proc_stat(pid)
    if stat is not None and _BOOT_ID.exists():
        return {"pid": pid, "boot_id": _BOOT_ID.read_text().strip(), "start_ticks": stat[1]}
    return {"pid": pid, "created": psutil.Process(pid).create_time()}


def is_alive(identity: dict) -> bool:
    """True while the process `identity` names still runs (a zombie has ended)."""
    pid = identity["pid"]
    if "start_ticks" in identity:
        stat = _proc_stat(pid)
        return (stat is not None and stat[0] != "Z" and stat[1] == identity["start_ticks"]
                and _BOOT_ID.read_text().strip() == identity["boot_id"])
    try:
        found = psutil.Process(pid)
        return (abs(found.create_time() - identity["created"]) < _FALLBACK_TOLERANCE_S
                and found.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in ticks since boot) from `/proc/<pid>/stat`, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])

"""A job's progress as data (a snapshot dict of plain values) and the one line a person reads for it.

The local runner hands snapshots to whoever runs it (the local job writes them
to `progress.json`); the wait task and the trigger read them back as data and
print them with `describe_progress`, never by parsing the job's log.
"""

from __future__ import annotations

# A running job's latest snapshot, rewritten as it advances: in a local job's folder, and in the CLI's work folder.
PROGRESS_FILE = "progress.json"


def describe_progress(snapshot: dict) -> str:
    """One line for a person: the same words in the job log, the CLI and the wait task's log."""
    total = snapshot["items_total"]
    listed = snapshot.get("listing_complete", True)
    more = "" if listed else "+ (still arriving)"
    percent = f" ({100.0 * snapshot['items_done'] / max(total, 1):.1f}%)" if listed else ""
    eta = f"{snapshot['eta_s']}s" if snapshot.get("eta_s") is not None else "unknown"
    reused = f", {snapshot['reused']} reused" if snapshot.get("reused") else ""
    return (f"{snapshot['phase']}: mini-batches {snapshot['batches_done']}/{snapshot['batches_total']}{more and '+'}, "
            f"images {snapshot['items_done']}/{total}{more}{percent}{reused}, {snapshot['img_s']:.1f} img/s, "
            f"errors {snapshot['errors']}, ETA {eta}")

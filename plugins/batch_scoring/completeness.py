"""When a month folder is complete enough to score: the folder check's rule, in one place.

A scheduled run fires at 00:00 UTC on the 1st, while the last day of the month may
still be uploading. The rule, a form setting:
- `marker` (the default): the uploader writes `_SUCCESS` at the month's root when it
  is done (`scoring.items.MONTH_MARKER`, never an input item);
- `quiet`: no blob under the month was created or changed in the last `quiet_minutes`;
- `any`: at least one blob, for months uploaded in one go before the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from scoring.items import MONTH_MARKER, is_input

RULES = ("marker", "quiet", "any")
DEFAULT_RULE = "marker"
DEFAULT_QUIET_MINUTES = 60
DEFAULT_TIMEOUT_HOURS = 48


@dataclasses.dataclass(frozen=True)
class FolderState:
    """What the month folder holds now: input blobs, the newest one's time, the marker, a fingerprint."""

    items: int
    newest: dt.datetime | None
    marker: bool
    fingerprint: str  # digest of every input blob's name and ETag: any added, changed or removed blob changes it

    def describe(self, now: dt.datetime) -> str:
        age = f"newest {_duration((now - self.newest).total_seconds())} old" if self.newest else "none yet"
        return f"{self.items} blobs so far, {age}, {MONTH_MARKER} marker {'present' if self.marker else 'absent'}"


def folder_state(container_client, month: str) -> FolderState:
    """The month's listing, streamed (memory stays flat on a month of any size; the listing is in name order)."""
    digest, count, newest, marker = hashlib.sha256(), 0, None, False
    prefix = f"{month}/"
    for blob in container_client.list_blobs(name_starts_with=prefix):
        if not is_input(blob.name[len(prefix):]):
            marker = True
            continue
        digest.update(f"{blob.name}\0{blob.etag}\n".encode("utf-8", "surrogatepass"))
        count += 1
        if blob.last_modified and (newest is None or blob.last_modified > newest):
            newest = blob.last_modified
    return FolderState(count, newest, marker, digest.hexdigest())


def missing(state: FolderState, rule: str, *, quiet_s: float, now: dt.datetime) -> str | None:
    """None when the month is complete under `rule`; else what is missing, as one phrase."""
    if rule not in RULES:
        raise ValueError(f"completeness rule {rule!r} is not one of {', '.join(RULES)}")
    if not state.items:
        return "no blobs under the month yet"
    if rule == "marker" and not state.marker:
        return f"no {MONTH_MARKER} marker yet (the uploader writes it at the month's root when the month is complete)"
    if rule == "quiet" and state.newest and (age := (now - state.newest).total_seconds()) < quiet_s:
        return f"the newest blob is {_duration(age)} old, the quiet period is {_duration(quiet_s)}"
    return None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

"""Which failures of a call to Azure are worth asking again, for both sides of the workflow.

One rule for the blob store (the job's inputs) and the workspace (submitting and
following jobs from Airflow): no answer at all, or an answer saying "busy" (5xx) or
"slow down" (429 throttling). Anything else is a refusal that asking again will not
change, and goes to the user as one line.
"""

from __future__ import annotations

import time

import urllib3
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError


class TransientStatus(Exception):
    """A service answered, but with a status worth asking again; raised by callers that read raw responses."""


def is_transient_status(status: int) -> bool:
    return status >= 500 or status == 429


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError,
                          urllib3.exceptions.HTTPError, TransientStatus)):
        return True
    status = error.status_code if isinstance(error, HttpResponseError) else None
    return bool(status) and is_transient_status(status)


class OutageClock:
    """How long a service has been failing, one clock for every call to it (retries, parallel calls, a request
    that hangs): an outage is timed from the start of the first failing call after the last success, and each
    request may wait only for what is left of it, so the limit is kept to within a second or two."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self._failing_since: float | None = None

    def succeeded(self) -> None:
        self._failing_since = None

    def failed(self, call_started: float) -> None:
        if self._failing_since is None:
            self._failing_since = call_started

    def remaining(self) -> float:
        if self._failing_since is None:
            return self.limit_s
        return self._failing_since + self.limit_s - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def request_timeout(self, usual_s: float) -> float:
        """The timeout for the next request: the usual one, cut to what is left of the outage limit."""
        return max(0.5, min(usual_s, self.remaining()))

"""Which failures of a call to Azure are worth asking again, for both sides of the workflow.

One rule for the blob store (the job's inputs) and the workspace (submitting and
following jobs from Airflow): no answer at all, or an answer saying "busy" (5xx) or
"slow down" (429 throttling). Anything else is a refusal that asking again will not
change, and goes to the user as one line.
"""

from __future__ import annotations

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

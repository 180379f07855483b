import pytest
import urllib3
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError

from scoring.transient import TransientStatus, is_transient


def _answer(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"HTTP {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize("error", [
    ServiceRequestError("connection refused"), ServiceResponseError("connection reset"), ConnectionResetError(),
    TimeoutError(), urllib3.exceptions.ProtocolError("reset"), TransientStatus("HTTP 503 ServerBusy"),
    _answer(500), _answer(503), _answer(429),
], ids=repr)
def test_no_answer_busy_or_throttled_is_asked_again(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    _answer(400), _answer(403), _answer(409), ResourceNotFoundError("no such job"), HttpResponseError("no status"),
    ValueError("bad input"),
], ids=repr)
def test_a_refusal_is_not(error):
    assert not is_transient(error)

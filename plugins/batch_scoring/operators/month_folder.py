"""The DAG's folder check: the month folder must be complete by the run's rule before anything is registered."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from batch_scoring.completeness import (
    DEFAULT_QUIET_MINUTES,
    DEFAULT_RULE,
    DEFAULT_TIMEOUT_HOURS,
    folder_state,
    missing,
)
from batch_scoring.triggers.month_folder import MonthFolderTrigger


FINGERPRINT_KEY = "fingerprint"


class MonthFolderCompleteOperator(BaseOperator):
    """Check the month's folder once; if it is not complete yet, wait deferred (no worker slot) until it is, or
    fail at the timeout in one line saying what was missing. Returns the input count and fingerprint.

    :param month: YYYYMM.
    :param container: the images container.
    :param rule: `marker` (default), `quiet` or `any` (`batch_scoring.completeness`).
    :param quiet_minutes: the `quiet` rule's period.
    :param timeout_hours: how long to wait for a complete month (0: not at all).
    :param poll_interval: seconds between two listings while waiting.
    """

    template_fields: Sequence[str] = ("month", "container", "rule", "quiet_minutes", "timeout_hours", "poll_interval")

    def __init__(self, *, month: str, container: str, wasb_conn_id: str = "wasb_default", rule: str = DEFAULT_RULE,
                 quiet_minutes: float = DEFAULT_QUIET_MINUTES, timeout_hours: float = DEFAULT_TIMEOUT_HOURS,
                 poll_interval: float = 300, **kwargs):
        super().__init__(**kwargs)
        self.month, self.container, self.wasb_conn_id, self.rule = month, container, wasb_conn_id, rule
        self.quiet_minutes, self.timeout_hours, self.poll_interval = quiet_minutes, timeout_hours, poll_interval

    def execute(self, context) -> dict[str, Any]:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        client = WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn().get_container_client(self.container)
        state = folder_state(client, self.month)
        now = dt.datetime.now(dt.timezone.utc)
        lacking = missing(state, self.rule, quiet_s=self._quiet_s(), now=now)
        self.log.info("%s/%s/: %s (rule %s)", self.container, self.month, state.describe(now), self.rule)
        if lacking is None:
            return self._complete(context, state.items, state.fingerprint)
        if float(self.timeout_hours) <= 0:
            self._fail(lacking)
        self.log.info("waiting, deferred, for the month to be complete: %s; giving up after %s h", lacking,
                      self.timeout_hours)
        self.defer(trigger=MonthFolderTrigger(
            wasb_conn_id=self.wasb_conn_id, container=self.container, month=self.month, rule=self.rule,
            quiet_s=self._quiet_s(), poll_s=float(self.poll_interval),
            end_time=time.time() + float(self.timeout_hours) * 3600), method_name="execute_complete")

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "complete":
            self._fail(event["missing"])
        return self._complete(context, event["items"], event["fingerprint"])

    def _quiet_s(self) -> float:
        return float(self.quiet_minutes) * 60

    def _complete(self, context, items: int, fingerprint: str) -> dict[str, Any]:
        self.log.info("%s/%s/ is complete: %d items (fingerprint %s)", self.container, self.month, items,
                      fingerprint[:12])
        context["ti"].xcom_push(key=FINGERPRINT_KEY, value=fingerprint)  # what the submit task reads
        return {"items": items, "fingerprint": fingerprint}

    def _fail(self, lacking: str) -> None:
        # Retrying cannot make data appear: fail now, in one line, and let the run be cleared once it is there.
        raise AirflowFailException(
            f"{self.container}/{self.month}/ is not complete after {self.timeout_hours} h (rule {self.rule}): "
            f"{lacking}; complete the upload, then clear this task")

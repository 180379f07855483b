"""Wait, deferred, for a month folder to be complete (`batch_scoring.completeness`): no worker slot is held.

Each poll lists the month and logs what it sees (blobs so far, the newest one's age,
the marker); the trigger fires when the rule holds or at its deadline. It holds only
plain values, and lists through the `wasb` connection's hook in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from batch_scoring.completeness import folder_state, missing


class MonthFolderTrigger(BaseTrigger):
    """
    :param wasb_conn_id: the blob store's connection.
    :param container: the images container.
    :param month: YYYYMM, the folder `<month>/`.
    :param rule: `marker`, `quiet` or `any`.
    :param quiet_s: the quiet period of the `quiet` rule.
    :param poll_s: seconds between two listings.
    :param end_time: epoch seconds after which the wait gives up.
    """

    def __init__(self, wasb_conn_id: str, container: str, month: str, rule: str, quiet_s: float, poll_s: float,
                 end_time: float):
        super().__init__()
        self.wasb_conn_id, self.container, self.month = wasb_conn_id, container, month
        self.rule, self.quiet_s, self.poll_s, self.end_time = rule, quiet_s, poll_s, end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"wasb_conn_id": self.wasb_conn_id, "container": self.container, "month": self.month,
                 "rule": self.rule, "quiet_s": self.quiet_s, "poll_s": self.poll_s, "end_time": self.end_time})

    def _container(self):
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        return WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn().get_container_client(self.container)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        container = await asyncio.to_thread(self._container)
        while True:
            state = await asyncio.to_thread(folder_state, container, self.month)
            now = dt.datetime.now(dt.timezone.utc)
            lacking = missing(state, self.rule, quiet_s=self.quiet_s, now=now)
            self.log.info("%s/%s/: %s; %s", self.container, self.month, state.describe(now),
                          "complete" if lacking is None else f"waiting: {lacking}")
            if lacking is None:
                yield TriggerEvent({"status": "complete", "items": state.items, "fingerprint": state.fingerprint})
                return
            if time.time() >= self.end_time:
                yield TriggerEvent({"status": "timeout", "missing": lacking, "items": state.items})
                return
            await asyncio.sleep(max(0.01, min(self.poll_s, self.end_time - time.time())))

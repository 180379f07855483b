"""Telling people about a month: a failed run, a drift warning, a missed deadline, one message each.

Through Airflow's notifier interface: `MonthAlert` writes the message (the month, one
line of reason, links to the run, the job and the report) and hands it to a sender,
SMTP by default (`smtp_default` connection: host, port, credentials and the from
address live there, never in code). Recipients are the run's `alert_emails` form
field, else `BATCH_SCORING_ALERT_EMAILS` in the environment (comma-separated; empty:
nothing is sent): scheduled runs have no form. Another notifier plugs in as
`sender`: any `BaseNotifier` class taking `to`, `subject` and `html_content`.
`deadline_missed` is the DAG's Deadline Alert callback (it runs in the triggerer).
"""

from __future__ import annotations

import html
import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

from batch_scoring.run_links import run_url

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
ALERT_PARAM = "alert_emails"
ALERT_ENV = "BATCH_SCORING_ALERT_EMAILS"
FAILED, DRIFT, LATE = "failed", "drift warning", "deadline missed"


def recipients(values: dict[str, Any]) -> list[str]:
    """The run's `alert_emails` (its params or conf), else the environment's default list."""
    listed = str(values.get(ALERT_PARAM) or "") or os.environ.get(ALERT_ENV, "")
    return [address.strip() for address in listed.split(",") if address.strip()]


def one_line(text: Any) -> str:
    return " ".join(str(text).split())[:500]


class MonthAlert(BaseNotifier):
    """One message about one month's run: `kind` is FAILED (the failed task's error is the reason) or DRIFT
    (`reason` given by the publish step)."""

    template_fields = ()

    def __init__(self, kind: str, *, reason: str | None = None, sender: type[BaseNotifier] | None = None,
                 smtp_conn_id: str = SMTP_CONN_ID):
        super().__init__()
        self.kind, self.reason, self.smtp_conn_id = kind, reason, smtp_conn_id
        self.sender = sender

    def notify(self, context) -> None:
        to = recipients(context.get("params") or {})
        if not to:
            log.info("no %s set: no %s message sent", ALERT_PARAM, self.kind)
            return
        subject, body = self.message(context)
        sender = self.sender or _smtp_notifier()
        extra = {"smtp_conn_id": self.smtp_conn_id} if self.sender is None else {}
        sender(to=to, subject=subject, html_content=body, **extra).notify(context)
        log.info("sent the %s message for %s to %s", self.kind, subject.split(":")[0], ", ".join(to))

    def message(self, context) -> tuple[str, str]:
        """(subject, HTML body): the month, one line of reason, links to the run, the job and the report."""
        ti, dag_run, params = context.get("ti"), context.get("dag_run"), context.get("params") or {}
        month = (_pull(ti, "plan_run", "month") or getattr(dag_run, "partition_key", None)
                 or (getattr(dag_run, "conf", None) or {}).get("month") or "?")
        if self.reason is not None:
            reason = one_line(self.reason)
        else:
            error = context.get("exception")
            task = getattr(ti, "task_id", "a task")
            reason = f"{task} failed: {one_line(error) if error else 'see its log'}"
        run_link = run_url(getattr(dag_run, "dag_id", None) or context["dag"].dag_id,
                            getattr(dag_run, "run_id", None) or context.get("run_id"))
        job_link = _pull(ti, "submit_scoring_job", "job_url")
        report = f"{params.get('predictions_container', 'predictions')}/{month}/report.html"
        links = [_link("Airflow run", run_link)] + ([_link("Job", job_link)] if job_link else [])
        links.append(f"<li>Report: {html.escape(report)} (in the predictions storage account)</li>")
        subject, body = _compose(month, self.kind, reason, links)
        return subject[:200], body


def _link(label: str, url: str) -> str:
    return f"<li>{html.escape(label)}: <a href='{html.escape(url)}'>{html.escape(url)}</a></li>"


def _compose(month: str, kind: str, reason: str, links: list[str]) -> tuple[str, str]:
    """(subject, HTML body) of every message: the month, its kind, one line of reason, the links."""
    subject = f"month {month}: {kind}: {reason}"
    body = (f"<p><b>Month {html.escape(month)}: {html.escape(kind)}</b></p><p>{html.escape(reason)}</p>"
            f"<ul>{''.join(links)}</ul>")
    return subject, body


def _smtp_notifier():
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier


def _pull(ti, task_id: str, key: str) -> Any:
    try:
        return ti.xcom_pull(task_ids=task_id, key=key) if ti is not None else None
    except Exception:  # noqa: BLE001 - a link is a courtesy; the message goes out without it
        return None


async def deadline_missed(context: dict, **_kwargs) -> None:
    """The DAG's Deadline Alert: the month's run has not finished by its deadline (`context`: the run as the
    scheduler sends it, and the deadline)."""
    run, deadline = context.get("dag_run") or {}, context.get("deadline") or {}
    conf = run.get("conf") or {}
    to = recipients(conf)
    month = run.get("partition_key") or conf.get("month") or "?"
    if not to:
        log.info("no %s: the missed deadline of month %s is only in the log", ALERT_PARAM, month)
        return
    reason = f"not published by {deadline.get('deadline_time')}; the run is {run.get('state')}"
    subject, body = _compose(month, LATE, reason,
                             [_link("Airflow run", run_url(run.get("dag_id", ""), run.get("dag_run_id")))])
    await _smtp_notifier()(to=to, subject=subject, html_content=body, smtp_conn_id=SMTP_CONN_ID).async_notify({})
    log.info("sent the %s message for month %s to %s", LATE, month, ", ".join(to))


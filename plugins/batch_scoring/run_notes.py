"""Every run of the monthly DAG shows its month: a listener records it on the run as the run starts.

Tasks cannot write their own run in Airflow 3, so the scheduler's
`on_dag_run_running` listener does, with the month rule the plan task applies
(`batch_scoring.month.resolve_month`), before any task is scheduled:
- a manual run with no month and no partition key gets `month` in its
  configuration, so the runs list's Conf column shows the month the rule chose
  (scheduled and backfill runs show theirs as their partition key, Airflow's own);
- the run's note says `month 202610`, unless a person wrote a note already.
A month the plan task will refuse is noted as such, so the runs list says why.
This is what Airflow's partitioned timetable cannot do: a manual run's month
comes from a form field or from the moment it was triggered, which no timetable
sees.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

from batch_scoring.month import MONTHLY_DAG_ID, InvalidMonth, resolve_month, run_date

log = logging.getLogger(__name__)


def run_month(dag_run) -> str:
    """The month a run scores; raises InvalidMonth with the plan task's one-line reason."""
    return resolve_month((dag_run.conf or {}).get("month"), dag_run.partition_key, run_date(dag_run))


@hookimpl
def on_dag_run_running(dag_run, msg: str) -> None:
    if dag_run.dag_id != MONTHLY_DAG_ID:
        return
    conf = dict(dag_run.conf or {})
    try:
        month = run_month(dag_run)
    except InvalidMonth as error:
        note = f"no month: {error}"
    else:
        note = f"month {month}"
        if conf.get("month") in (None, "") and not dag_run.partition_key:
            dag_run.conf = {**conf, "month": month}  # a new dict: the column sees the change
    if not dag_run.note:
        dag_run.note = note
    log.info("run %s: %s", dag_run.run_id, note)

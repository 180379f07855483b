"""Every run of the monthly DAG shows its month: a listener records it on the run as the run starts.

Tasks cannot write their own run in Airflow 3, so the scheduler's
`on_dag_run_running` listener does, with the month rule the plan task applies
(`batch_scoring.month.resolve_month`), before any task is scheduled:
- the run's configuration gets `month` when it has none, so the runs list's Conf
  column shows it for scheduled, backfill and manual runs alike (the plan task
  then reads the same month back: a rerun of the run scores the same month);
- the run's note says `month 202610`, unless a person wrote a note already.
A month the plan task will refuse is noted as such, so the runs list says why.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

from batch_scoring.month import MONTHLY_DAG_ID, InvalidMonth, resolve_month

log = logging.getLogger(__name__)


def run_month(conf: dict | None, data_interval_start, run_after) -> str:
    """The month a run scores; raises InvalidMonth with the plan task's one-line reason."""
    return resolve_month((conf or {}).get("month"), data_interval_start, run_after)


@hookimpl
def on_dag_run_running(dag_run, msg: str) -> None:
    if dag_run.dag_id != MONTHLY_DAG_ID:
        return
    conf = dict(dag_run.conf or {})
    try:
        month = run_month(conf, dag_run.data_interval_start, dag_run.run_after)
    except InvalidMonth as error:
        note = f"no month: {error}"
    else:
        note = f"month {month}"
        if conf.get("month") in (None, ""):
            dag_run.conf = {**conf, "month": month}  # a new dict: the column sees the change
    if not dag_run.note:
        dag_run.note = note
    log.info("run %s: %s", dag_run.run_id, note)

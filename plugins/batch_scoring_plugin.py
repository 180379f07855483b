"""Registers the batch-scoring parts Airflow's UI and scheduler must know of.

- the embedded default's job pages at `/batch-scoring` (the *Azure ML Studio* link's target there);
- the listener that notes each monthly run's month on the run (the schedule is Airflow's own partitioned
  cron: nothing to register).

The *Azure ML Studio* link itself needs no registration in Airflow 3: the worker
stores each operator link's URL as an XCom when the task ends, and the UI reads
that XCom through the link's name kept in the serialized DAG. Registering the
link class here would make the API server call its `get_link`, which reads XCom
through the task SDK and fails outside a worker.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from batch_scoring import run_notes
from batch_scoring.job_pages import URL_PREFIX, app


class BatchScoringPlugin(AirflowPlugin):
    name = "batch_scoring"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Batch scoring jobs (embedded default)"}]
    listeners = [run_notes]

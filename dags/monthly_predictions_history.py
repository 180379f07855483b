"""
### Predictions history (downstream of the monthly scoring)

Runs once for every month `monthly_batch_scoring` publishes: scheduled on the
`monthly_predictions` asset by partition, so its run's partition key is the
month published (`202610`). It checks that the month's files in the
predictions container are the ones its `manifest.json` lists (sha256 and size),
then records the month's counts in `history.csv` at the container's root (one
row per month; a month published again replaces its row).

An example of a DAG of your own that needs "the predictions of 2026-10": schedule
it the same way, read `dag_run.partition_key`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from batch_scoring.predictions_asset import MONTHLY_PREDICTIONS

WASB_CONN_ID = "wasb_default"


@dag(
    dag_id="monthly_predictions_history",
    schedule=PartitionedAssetTimetable(assets=MONTHLY_PREDICTIONS),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["scoring", "monthly", "downstream"],
    doc_md=__doc__,
    params={"predictions_container": Param("predictions", type="string", minLength=3,
                                           title="Predictions container")},
)
def monthly_predictions_history():
    @task
    def record_published_month(params: dict, dag_run=None) -> dict:
        """Verify the month's published files against its manifest, then record its counts."""
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
        from airflow.sdk.exceptions import AirflowFailException

        from batch_scoring.history import HISTORY_FILE, PublishedMonthMismatch, record_month, verify_published
        from scoring.month import InvalidMonth

        container = WasbHook(wasb_conn_id=WASB_CONN_ID).get_conn().get_container_client(
            params["predictions_container"])
        try:
            manifest = verify_published(container, dag_run.partition_key)
        except (InvalidMonth, PublishedMonthMismatch) as error:
            raise AirflowFailException(str(error)) from None
        rows = record_month(container, manifest)
        counts = manifest["counts"]
        print(f"month {manifest['month']}: {counts['inputs']} images, {counts['scored']} scored, "
              f"{counts['errors']} errors (job {manifest['job_name']}); {HISTORY_FILE} has {len(rows)} month(s)")
        return {"month": manifest["month"], "months_recorded": len(rows)}

    record_published_month()


monthly_predictions_history_dag = monthly_predictions_history()

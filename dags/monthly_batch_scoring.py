"""
### Monthly batch image scoring

Scores one month of images (`images/<YYYYMM>/` in Blob Storage) with a registered
PyTorch model on Azure ML (or the embedded default) and publishes
`predictions/<YYYYMM>/predictions.csv`, `errors.csv`, `report.html` (charts, drift
against the previous month) and `manifest.json`.

**Which month:** months are the DAG's partitions (`YYYYMM`). The run due at
00:00 UTC on 1 November is partition `202610` and scores October 2026 (its run
id: `scheduled__2026-11-01T00:00:00+00:00__202610__…`). A manual run scores the
month in the form's `month` field (or its *Partition key*), else the last
complete month before it was triggered. Every run's note says its month
(`month 202610`).

**Backfill** months M1..M2 by their first days: from-date = 1st of M1, to-date =
1st of M2 (UI: *Backfill*; CLI: `airflow backfill create --dag-id
monthly_batch_scoring --from-date 2026-01-01 --to-date 2026-03-01` scores 202601,
202602 and 202603).

**Downstream:** each published month is an event of the `monthly_predictions`
asset with the month as its partition key; `monthly_predictions_history` runs
for exactly that month.

**Steps:** plan the run (validates month and settings, no I/O) → check the model
(registered, in a format the job loads; fails at once otherwise) → check the month
folder (complete by the run's rule: the `_SUCCESS` marker by default, or a quiet
period, or any blob; it waits deferred, holding no worker slot, and fails in one line
at its timeout) → register the data asset (version = month)
→ ensure the compute → submit the scoring job (reattaches to a live attempt, reuses a
completed one over the same blobs) → wait (live progress in its log; a retry after a
failed job submits the next attempt) → validate, report and publish. The submit and
wait tasks carry an *Azure ML Studio* link to the job.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, task

from batch_scoring.completeness import DEFAULT_QUIET_MINUTES, DEFAULT_RULE, DEFAULT_TIMEOUT_HOURS
from batch_scoring.completeness import RULES as COMPLETENESS_RULES
from batch_scoring.drift import DEFAULT_PSI_THRESHOLD
from batch_scoring.notifications import ALERT_PARAM, FAILED, MonthAlert, deadline_missed
from batch_scoring.month import MONTH_SCHEMA, MONTHLY_DAG_ID, monthly_schedule
from batch_scoring.operators.month_folder import FINGERPRINT_KEY, MonthFolderCompleteOperator
from batch_scoring.operators.publish import PublishScoredMonthOperator
from scoring.items import MONTH_MARKER
from scoring.job_settings import param_schemas
from batch_scoring.operators.azure_ml import (
    AzureMLCheckModelOperator,
    AzureMLEnsureComputeOperator,
    AzureMLRegisterDataAssetOperator,
    AzureMLSubmitScoringJobOperator,
    AzureMLWaitForJobOperator,
)

DAG_ID = MONTHLY_DAG_ID  # the run-notes listener labels this DAG's runs with their month
WASB_CONN_ID = "wasb_default"
AZURE_ML_CONN_ID = "azure_ml_default"
DATA_ASSET_NAME = "monthly-images"
# Between a task's failure and its retry (a retry of the wait submits the job's next attempt); seconds.
RETRY_DELAY = dt.timedelta(seconds=int(os.environ.get("BATCH_SCORING_RETRY_DELAY_S", "120")))
# The month is due this long after its run was queued: 36 h puts a scheduled run's deadline at 12:00 UTC on the
# 2nd. Airflow's Deadline Alerts are the DAG's, not a run's: it is set here (or by the environment), not in the form;
# 0 switches it off.
PUBLISH_DEADLINE = dt.timedelta(hours=float(os.environ.get("BATCH_SCORING_PUBLISH_DEADLINE_H", "36")))

# The job settings and the scoring profile: one definition (scoring.job_settings), one set of defaults.
JOB_PARAMS = {name: Param(default, **schema) for name, (default, schema) in param_schemas().items()}


@dag(
    dag_id=DAG_ID,
    schedule=monthly_schedule(),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    # Not finished this long after it was queued (a scheduled run: at 00:00 on the 1st): the month is late.
    deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=PUBLISH_DEADLINE,
                           callback=AsyncCallback(deadline_missed)) if PUBLISH_DEADLINE else None,
    # A task that fails for good (its retries spent) tells the run's alert_emails, with the month and why.
    default_args={"retries": 2, "retry_delay": RETRY_DELAY, "on_failure_callback": MonthAlert(FAILED)},
    tags=["scoring", "azure-ml", "monthly"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "month": Param(None, type=["null", "string"], **MONTH_SCHEMA, title="Month (YYYYMM)",
                       description="The month to score as six digits, year then month: 202610 is October 2026. "
                                   "Empty: the run's partition (a scheduled or backfill run's month), else "
                                   "the last complete month.",
                       section="Month"),
        "model_name": Param("shapes-classifier", type="string", minLength=1, title="Model name", section="Model"),
        "model_version": Param("1", type="string", minLength=1, title="Model version", section="Model"),
        "completeness": Param(DEFAULT_RULE, type="string", enum=list(COMPLETENESS_RULES),
                              title="Month complete when",
                              description=f"marker: the uploader has written {MONTH_MARKER} at the month's root "
                                          "(never scored); quiet: no blob changed for the quiet period; any: at "
                                          "least one blob (a month uploaded in one go). The check waits deferred, "
                                          "holding no worker slot.", section="Month"),
        "quiet_minutes": Param(DEFAULT_QUIET_MINUTES, type="number", minimum=0, title="Quiet period (min)",
                               description="The quiet rule: minutes without a new or changed blob.", section="Month"),
        "completeness_timeout_hours": Param(DEFAULT_TIMEOUT_HOURS, type="number", minimum=0,
                                            title="Wait for a complete month (h)",
                                            description="Then the check fails in one line saying what was missing "
                                                        "(0: do not wait).", section="Month"),
        "images_container": Param("images", type="string", minLength=3, title="Images container",
                                  section="Storage"),
        "predictions_container": Param("predictions", type="string", minLength=3, title="Predictions container",
                                       section="Storage"),
        "datastore": Param("images", type="string", minLength=1, title="Azure ML datastore of the images container",
                           section="Storage"),
        "compute_name": Param("gpu-cluster", type="string", minLength=2, title="Compute cluster", section="Compute"),
        "max_nodes": Param(2, type="integer", minimum=1, title="Max nodes", section="Compute"),
        "poll_interval": Param(30, type="integer", minimum=1, title="Status poll interval (s)", section="Compute"),
        ALERT_PARAM: Param(None, type=["null", "string"], title="Alert e-mails",
                           description="Comma-separated addresses told of a failed month, a drift warning and a "
                                       "missed deadline, through the smtp_default connection (empty: the "
                                       "BATCH_SCORING_ALERT_EMAILS list of the environment, if any).",
                           section="Report"),
        "drift_psi_threshold": Param(DEFAULT_PSI_THRESHOLD, type="number", minimum=0, title="Drift warning threshold",
                                     description="Population stability index against the previous published month "
                                                 "above which the report and the log mark the month as a warning "
                                                 "(0.1: moved, 0.25: changed).", section="Report"),
        **JOB_PARAMS,
    },
)
def monthly_batch_scoring():
    @task(multiple_outputs=True)
    def plan_run(params: dict, dag_run=None, dag=None) -> dict:
        """Everything the run needs, validated before any I/O; a bad value fails at once, without retries."""
        from airflow.sdk.exceptions import AirflowFailException

        from batch_scoring.month import InvalidMonth, resolve_month, run_date
        from scoring.job_settings import JobSettings, JobSettingsError

        conf = getattr(dag_run, "conf", None) or {}
        # Judged against the DAG's declared Params: Airflow merges a run's conf, unknown keys included, into
        # the `params` a task sees, so they could never show there.
        known = set(dag.params)
        unknown = sorted(set(conf) - known)
        if unknown:  # a misspelt key ({"mnth": ...}) would otherwise score the default month without a word
            raise AirflowFailException(f"unknown run configuration key(s) {', '.join(map(repr, unknown))}; known: "
                                       f"{', '.join(sorted(known))}")
        try:
            # A partition asking for another month (one month given to a whole backfill) is refused here.
            month = resolve_month(params.get("month"), dag_run.partition_key, run_date(dag_run))
            settings = JobSettings.from_dict({name: params[name] for name in JOB_PARAMS})
        except (InvalidMonth, JobSettingsError) as error:
            raise AirflowFailException(str(error)) from None
        plan = {
            "month": month,
            "job_name": f"{dag.dag_id}-{month}".replace("_", "-"),
            "data_asset_path": f"azureml://datastores/{params['datastore']}/paths/{month}/",
            "job_settings": settings.to_dict(),
        }
        print(f"scoring month {month}: {plan}")
        return plan

    plan = plan_run()
    model = AzureMLCheckModelOperator(
        task_id="check_model", azure_ml_conn_id=AZURE_ML_CONN_ID,
        model_name="{{ params.model_name }}", model_version="{{ params.model_version }}",
        top_k="{{ ti.xcom_pull(task_ids='plan_run', key='job_settings')['top_k'] }}",
    )
    folder = MonthFolderCompleteOperator(
        task_id="check_month_folder", month=plan["month"], container="{{ params.images_container }}",
        wasb_conn_id=WASB_CONN_ID, rule="{{ params.completeness }}", quiet_minutes="{{ params.quiet_minutes }}",
        timeout_hours="{{ params.completeness_timeout_hours }}", poll_interval="{{ params.poll_interval }}",
    )
    register = AzureMLRegisterDataAssetOperator(
        task_id="register_data_asset", azure_ml_conn_id=AZURE_ML_CONN_ID,
        name=DATA_ASSET_NAME, version=plan["month"], path=plan["data_asset_path"],
    )
    compute = AzureMLEnsureComputeOperator(
        task_id="ensure_compute", azure_ml_conn_id=AZURE_ML_CONN_ID,
        compute_name="{{ params.compute_name }}", max_instances="{{ params.max_nodes }}",
    )
    submit = AzureMLSubmitScoringJobOperator(
        task_id="submit_scoring_job", azure_ml_conn_id=AZURE_ML_CONN_ID, retries=3,
        job_name=plan["job_name"], month=plan["month"],
        data_asset_name=DATA_ASSET_NAME, data_asset_version=plan["month"],
        model_name="{{ params.model_name }}", model_version="{{ params.model_version }}",
        compute_name="{{ params.compute_name }}", job_settings=plan["job_settings"],
        inputs_fingerprint=folder.output[FINGERPRINT_KEY],
    )
    wait = AzureMLWaitForJobOperator(
        task_id="wait_for_scoring_job", azure_ml_conn_id=AZURE_ML_CONN_ID,
        job_name=submit.output, job_spec=submit.output["job_spec"], poll_interval="{{ params.poll_interval }}",
    )
    # The job the wait ended on: a retry of the wait may have submitted the next attempt.
    publish = PublishScoredMonthOperator(
        task_id="validate_and_publish", wasb_conn_id=WASB_CONN_ID, azure_ml_conn_id=AZURE_ML_CONN_ID,
        month=plan["month"], job=wait.output, model=model.output, job_settings=plan["job_settings"],
        model_name="{{ params.model_name }}", model_version="{{ params.model_version }}",
        images_container="{{ params.images_container }}", predictions_container="{{ params.predictions_container }}",
        drift_psi_threshold="{{ params.drift_psi_threshold }}",
    )
    plan >> model >> folder >> register >> compute >> submit >> wait >> publish


monthly_batch_scoring_dag = monthly_batch_scoring()

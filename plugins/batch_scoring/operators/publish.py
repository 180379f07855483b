"""The DAG's last step as an operator: validate the month's job outputs, report, publish, tell, record lineage.

The work is `publish_step.publish_scored_month`; around it the operator turns a
refusal into a failure without retries, sends the drift alert, marks the
predictions asset's event with the month as its partition key, and reports what
it read and wrote to OpenLineage (`get_openlineage_facets_on_complete`, called by
the OpenLineage provider's listener when it is installed and enabled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from batch_scoring.hooks.azure_ml import AzureMLHook
from batch_scoring.lineage import PublishedMonth
from batch_scoring.predictions_asset import MONTHLY_PREDICTIONS

if TYPE_CHECKING:
    from airflow.sdk import Context


class PublishScoredMonthOperator(BaseOperator):
    """Publish `predictions/<month>/` from the completed job the wait task returned.

    :param month: the month, YYYYMM.
    :param job: the wait task's event for the completed job (its `job_name`, `duration_s`).
    :param model: the model check's result (its `multi_label`).
    :param job_settings: the plan's job settings (`top_k`, `all_scores` shape the columns).
    :param model_name: registered model name; :param model_version: its version.
    :param images_container: the month's images; :param predictions_container: where it is published.
    :param drift_psi_threshold: the drift warning threshold.
    """

    template_fields: Sequence[str] = ("month", "job", "model", "job_settings", "model_name", "model_version",
                                      "images_container", "predictions_container", "drift_psi_threshold")

    def __init__(self, *, month: str, job: dict[str, Any], model: dict[str, Any], job_settings: dict[str, Any],
                 model_name: str, model_version: str, images_container: str, predictions_container: str,
                 drift_psi_threshold: float | str, wasb_conn_id: str = "wasb_default",
                 azure_ml_conn_id: str = AzureMLHook.default_conn_name, **kwargs):
        kwargs.setdefault("outlets", [MONTHLY_PREDICTIONS])
        super().__init__(**kwargs)
        self.month, self.job, self.model, self.job_settings = month, job, model, job_settings
        self.model_name, self.model_version = model_name, model_version
        self.images_container, self.predictions_container = images_container, predictions_container
        self.drift_psi_threshold = drift_psi_threshold
        self.wasb_conn_id, self.azure_ml_conn_id = wasb_conn_id, azure_ml_conn_id
        self.published: PublishedMonth | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        from batch_scoring.notifications import DRIFT, MonthAlert
        from batch_scoring.publish_step import PublishRefused, publish_scored_month
        from scoring.rows import prediction_columns

        blobs = WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn()
        images = blobs.get_container_client(self.images_container)
        predictions = blobs.get_container_client(self.predictions_container)
        try:
            manifest, written = publish_scored_month(
                workspace=AzureMLHook(azure_ml_conn_id=self.azure_ml_conn_id), images=images,
                predictions=predictions, month=self.month, job=self.job, model_name=self.model_name,
                model_version=self.model_version, run_id=context["run_id"],
                drift_threshold=float(self.drift_psi_threshold),
                columns=prediction_columns(top_k=self.job_settings["top_k"],
                                           all_scores=self.job_settings["all_scores"],
                                           multi_label=self.model["multi_label"]),
            )
        except PublishRefused as refused:  # a retry cannot make this job the latest
            raise AirflowFailException(str(refused)) from None
        self.published = PublishedMonth(
            account=predictions.account_name, images_container=self.images_container,
            predictions_container=self.predictions_container, month=self.month, files=tuple(written),
            job_name=self.job["job_name"], counts=dict(manifest["counts"]))
        if (manifest.get("drift") or {}).get("warning"):
            MonthAlert(DRIFT, reason=manifest["drift"]["message"]).notify(context)
        # The event's partition is the month published, for every run (a manual run has no partition of its own).
        event = context["outlet_events"][MONTHLY_PREDICTIONS]
        event.add_partitions(self.month)
        event.extra = {"month": self.month, "job_name": self.job["job_name"], **manifest["counts"]}
        return manifest

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """The month's image folder in, the published files out, the job and counts as a run facet."""
        from batch_scoring.lineage import operator_lineage

        if self.published is None:  # nothing was published: nothing to report
            from airflow.providers.openlineage.extractors import OperatorLineage

            return OperatorLineage()
        return operator_lineage(self.published)

"""What a published month read and wrote, as OpenLineage datasets (for the OpenLineage provider's listener).

Input: the month's image folder; outputs: each published file. Names follow
OpenLineage's naming for Azure Blob Storage: namespace
`wasbs://<container>@<account>.blob.core.windows.net`, name the blob path
(`202610/predictions.csv`); nothing of a connection's secret is in either. The
run carries a `batchScoring` facet: the job's name, the month and its counts;
`predictions.csv` and `errors.csv` carry their row counts (`outputStatistics`).

Built from plain values (`PublishedMonth`), so the operator stays free of
OpenLineage until a listener asks, and without the provider nothing is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import attrs

SCORING_FACET = "batchScoring"


@dataclasses.dataclass(frozen=True)
class PublishedMonth:
    account: str
    images_container: str
    predictions_container: str
    month: str
    files: tuple[str, ...]  # blob names written, manifest included
    job_name: str
    counts: dict[str, int]

    def input_folder(self) -> tuple[str, str]:
        return blob_namespace(self.account, self.images_container), f"{self.month}/"

    def outputs(self) -> list[tuple[str, str]]:
        return [(blob_namespace(self.account, self.predictions_container), name) for name in self.files]


def blob_namespace(account: str, container: str) -> str:
    return f"wasbs://{container}@{account}.blob.core.windows.net"


def _scoring_facet_class():
    from openlineage.client.facet_v2 import RunFacet

    @attrs.define
    class BatchScoringRunFacet(RunFacet):
        """The scoring job behind the published month and its counts."""

        jobName: str  # noqa: N815 - OpenLineage facets use camelCase
        month: str
        inputs: int
        scored: int
        errors: int

    return BatchScoringRunFacet


def operator_lineage(published: PublishedMonth) -> Any:
    """The provider's `OperatorLineage` for a published month."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    from airflow.providers.openlineage.extractors import OperatorLineage

    rows = {"predictions.csv": published.counts["scored"], "errors.csv": published.counts["errors"]}
    outputs = []
    for namespace, name in published.outputs():
        facets = {}
        if (row_count := rows.get(name.rsplit("/", 1)[-1])) is not None:
            facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=row_count)
        outputs.append(OutputDataset(namespace=namespace, name=name, outputFacets=facets))
    namespace, name = published.input_folder()
    facet = _scoring_facet_class()(jobName=published.job_name, month=published.month, **{
        key: int(published.counts[key]) for key in ("inputs", "scored", "errors")})
    return OperatorLineage(inputs=[InputDataset(namespace=namespace, name=name)], outputs=outputs,
                           run_facets={SCORING_FACET: facet})

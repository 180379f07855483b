"""The published predictions as an Airflow asset: the monthly DAG's outlet, the history DAG's schedule.

One event per published month, its partition key the month (`202610`) and its
`extra` the job and the counts; a DAG scheduled on it by partition
(`PartitionedAssetTimetable`) runs once per month published, with that month as
its own partition key.
"""

from __future__ import annotations

from airflow.sdk import Asset

MONTHLY_PREDICTIONS = Asset(name="monthly_predictions", uri="wasb://predictions/")

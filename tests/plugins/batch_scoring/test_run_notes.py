import datetime as dt
from types import SimpleNamespace

from batch_scoring.run_notes import on_dag_run_running

UTC = dt.timezone.utc


def _run(conf=None, partition_key=None, run_after=dt.datetime(2026, 11, 26, 9, tzinfo=UTC), note=None,
         dag_id="monthly_batch_scoring"):
    return SimpleNamespace(dag_id=dag_id, run_id="r", conf=conf, partition_key=partition_key, run_after=run_after,
                           note=note)


def test_a_scheduled_run_is_noted_with_its_partition_month_and_its_conf_left_alone():
    run = _run(partition_key="202609", run_after=dt.datetime(2026, 10, 1, tzinfo=UTC))
    on_dag_run_running(run, "started")
    assert run.conf is None and run.note == "month 202609"  # the runs list shows the partition key itself


def test_a_partition_asking_for_another_month_is_noted_as_refused():
    run = _run(conf={"month": "202601"}, partition_key="202609")
    on_dag_run_running(run, "started")
    assert run.note.startswith("no month: the run is partition 202609 but its configuration asks for month 202601")


def test_a_form_month_wins_and_an_empty_one_is_filled_by_the_rule():
    run = _run(conf={"month": "202503", "poll_interval": 3})
    on_dag_run_running(run, "started")
    assert run.conf == {"month": "202503", "poll_interval": 3} and run.note == "month 202503"
    run = _run(conf={"month": None})
    on_dag_run_running(run, "started")
    assert run.conf == {"month": "202610"} and run.note == "month 202610"  # manual run on 26 Nov


def test_a_bad_month_is_noted_with_the_reason_and_a_persons_note_is_kept():
    run = _run(conf={"month": "2026-13"})
    on_dag_run_running(run, "started")
    assert run.conf == {"month": "2026-13"}
    assert run.note == "no month: invalid month '2026-13': expected YYYYMM, six digits, e.g. 202610 for October 2026"
    run = _run(note="rerun after the storage outage")
    on_dag_run_running(run, "started")
    assert run.note == "rerun after the storage outage" and run.conf == {"month": "202610"}


def test_other_dags_are_left_alone():
    run = _run(dag_id="another_dag")
    on_dag_run_running(run, "started")
    assert run.conf is None and run.note is None

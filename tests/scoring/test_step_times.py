"""Seconds per step of a start-up, each from the end of the one before."""

from scoring import step_times
from scoring.step_times import StepTimes


def test_each_step_counts_from_the_end_of_the_one_before(monkeypatch):
    clock = iter([10.0, 10.5, 12.0])
    monkeypatch.setattr(step_times.time, "perf_counter", lambda: next(clock))
    steps = StepTimes()  # 10.0
    steps.step("import_torch")  # 10.5
    steps.step("model")  # 12.0
    assert steps == {"import_torch": 0.5, "model": 1.5}
    assert steps.describe() == "2.0s (import torch 0.50s, model 1.50s)"


def test_the_first_step_counts_from_an_earlier_reading(monkeypatch):
    monkeypatch.setattr(step_times.time, "perf_counter", lambda: 7.25)
    steps = StepTimes(started=5.0)
    steps.step("imports")
    assert steps == {"imports": 2.25}

import math

import pytest

from batch_scoring.drift import compare, psi


def _month(labels: dict[str, int], score_bins: list[int] | None = None) -> dict:
    return {"labels": labels, "score_bins": score_bins or [0] * 18 + [10, 90]}


def test_psi_matches_its_formula_and_is_zero_for_the_same_distribution():
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([500, 500], [90, 10]) == pytest.approx((0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5))
    assert psi({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0  # counts or shares: only the distribution matters


def test_identical_months_show_no_drift():
    month = _month({"circle": 300, "square": 300, "triangle": 400})
    drift = compare(month, month, previous_month="202609", threshold=0.2)
    assert drift.label_psi == 0.0 and drift.score_psi == 0.0 and not drift.warning
    assert all(shift.change_points == 0 for shift in drift.labels)


def test_a_known_shift_is_measured_and_marked_as_a_warning():
    before = _month({"circle": 333, "square": 333, "triangle": 334})
    after = _month({"circle": 700, "square": 150, "triangle": 150}, [0] * 10 + [50] * 10)  # and less confident
    drift = compare(before, after, previous_month="202609", threshold=0.2)
    shares = {shift.label: round(shift.change_points, 1) for shift in drift.labels}
    assert shares == {"circle": 36.7, "square": -18.3, "triangle": -18.4}
    assert drift.label_psi == pytest.approx(psi([333, 333, 334], [700, 150, 150]))
    assert drift.label_psi > 0.2 and drift.score_psi > 0.2 and drift.warning
    assert drift.describe().startswith("drift vs 202609: label PSI ")
    assert "above the threshold 0.2" in drift.describe() and "circle +36.7 pts" in drift.describe()
    assert not compare(before, after, previous_month="202609", threshold=10.0).warning


def test_a_label_that_appears_or_vanishes_counts_finitely():
    drift = compare(_month({"circle": 100}), _month({"circle": 50, "star": 50}), previous_month="202609")
    assert math.isfinite(drift.label_psi) and drift.warning


def test_no_previous_month_means_nothing_to_compare():
    assert compare(None, _month({"circle": 1}), previous_month="202609") is None

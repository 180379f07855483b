"""The month's human report (`report.md`): what was scored, the label mix, the score spread, the errors.

Read by people, not programs: the CSVs and the manifest stay the contract.
"""

from __future__ import annotations

import collections
import csv
from pathlib import Path

from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE

REPORT_FILE = "report.md"
_BINS = 10


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _cell(text: str) -> str:
    """Table-safe: a name with `|` or a backtick must not break the report's tables."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def _bar(count: int, largest: int, width: int = 30) -> str:
    return "█" * max(1 if count else 0, round(width * count / largest)) if largest else ""


def write_report(folder: Path, *, month: str, model: str, job_name: str) -> Path:
    predictions = _rows(folder / PREDICTIONS_FILE)
    errors = _rows(folder / ERRORS_FILE)
    total = len(predictions) + len(errors)
    lines = [
        f"# Scoring report — {month}",
        "",
        f"Model `{model}`, job `{job_name}`.",
        "",
        f"- images: {total}",
        f"- scored: {len(predictions)} ({len(predictions) / total:.1%})" if total else "- scored: 0",
        f"- errors: {len(errors)}",
        "",
        "## Label mix",
        "",
        "| label | images | share |",
        "| --- | ---: | ---: |",
    ]
    labels = collections.Counter(row["label"] for row in predictions)
    for label, count in sorted(labels.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| {_cell(label)} | {count} | {count / len(predictions):.1%} |")
    lines += ["", "## Top-1 score", "", "| score | images | |", "| --- | ---: | --- |"]
    bins = collections.Counter(min(int(float(row["score"]) * _BINS), _BINS - 1) for row in predictions)
    largest = max(bins.values(), default=0)
    for index in range(_BINS):
        low, high = index / _BINS, (index + 1) / _BINS
        lines.append(f"| {low:.1f}–{high:.1f} | {bins[index]} | {_bar(bins[index], largest)} |")
    lines += ["", "## Errors by type", ""]
    if errors:
        lines += ["| error_type | images | example |", "| --- | ---: | --- |"]
        by_type = collections.defaultdict(list)
        for row in errors:
            by_type[row["error_type"]].append(row)
        for error_type, rows in sorted(by_type.items(), key=lambda item: (-len(item[1]), item[0])):
            example = rows[0]
            lines.append(f"| {_cell(error_type)} | {len(rows)} | `{_cell(example['image'])}`: {_cell(example['message'])} |")
    else:
        lines.append("None.")
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

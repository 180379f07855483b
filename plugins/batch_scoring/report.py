"""The month's report for people (`report.html`): one self-contained page with charts.

`summarize` reads the merged CSVs with pandas in chunks (memory stays flat on a
month of millions of rows) into a `MonthSummary`; its `to_manifest()` part is
what the next month's drift compares against. `write_report` renders the page:
counts, run time and throughput, label mix, score histogram, errors by type,
mean score per label, the lowest-confidence images, where the input and
output folders are (account, container, folder and the command that lists them:
never a URL with a signature, and no link a browser cannot open without
credentials), links to the files published beside it, and drift against the
previous published month. Charts are PNGs (matplotlib) inlined as data URIs, so
the file opens anywhere, offline.

Read by people, not programs: the CSVs and the manifest stay the contract.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch_scoring.drift import Drift, shares
from batch_scoring.output_csv import CHUNK_ROWS, read_chunks
from scoring.blob_location import BlobFolder
from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE

REPORT_FILE = "report.html"
SCORE_BINS = 20  # equal-width bins of the top-1 score over [0, 1]
LOWEST_SHOWN = 15


@dataclasses.dataclass
class MonthSummary:
    scored: int = 0
    errors: int = 0
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    label_score_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    score_bins: list[int] = dataclasses.field(default_factory=lambda: [0] * SCORE_BINS)
    errors_by_type: dict[str, int] = dataclasses.field(default_factory=dict)
    error_examples: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    lowest: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)  # (image, label, score)

    @property
    def inputs(self) -> int:
        return self.scored + self.errors

    def mean_scores(self) -> dict[str, float]:
        return {label: self.label_score_sums[label] / count for label, count in self.labels.items() if count}

    def to_manifest(self) -> dict[str, Any]:
        """The distributions a later month's drift is computed against."""
        return {"labels": dict(sorted(self.labels.items())), "score_bins": list(self.score_bins)}


def summarize(folder: Path, *, chunk_rows: int = CHUNK_ROWS) -> MonthSummary:
    summary = MonthSummary()
    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    lowest = pd.DataFrame({"image": pd.Series(dtype=str), "label": pd.Series(dtype=str), "score": []})
    for chunk in read_chunks(folder / PREDICTIONS_FILE, chunk_rows=chunk_rows, usecols=["image", "label", "score"]):
        scores = pd.to_numeric(chunk["score"], errors="coerce").clip(0.0, 1.0)
        chunk = chunk.assign(score=scores)
        summary.scored += len(chunk)
        for label, (count, total) in chunk.groupby("label")["score"].agg(["count", "sum"]).iterrows():
            summary.labels[label] = summary.labels.get(label, 0) + int(count)
            summary.label_score_sums[label] = summary.label_score_sums.get(label, 0.0) + float(total)
        summary.score_bins = list(np.add(summary.score_bins, np.histogram(scores.dropna(), bins=edges)[0]).tolist())
        lowest = pd.concat([lowest, chunk.nsmallest(LOWEST_SHOWN, "score")]).nsmallest(LOWEST_SHOWN, "score")
    summary.lowest = [(row.image, row.label, float(row.score)) for row in lowest.itertuples()]
    for chunk in read_chunks(folder / ERRORS_FILE, chunk_rows=chunk_rows):
        summary.errors += len(chunk)
        for error_type, count in chunk["error_type"].value_counts().items():
            summary.errors_by_type[error_type] = summary.errors_by_type.get(error_type, 0) + int(count)
        for error_type, row in chunk.drop_duplicates("error_type").set_index("error_type").iterrows():
            summary.error_examples.setdefault(error_type, (row["image"], row["message"]))
    return summary


def _chart(draw, *, width: float = 6.0, height: float = 3.0) -> str:
    """A matplotlib figure drawn by `draw(axes)`, as an inline PNG <img>."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    try:
        draw(axes)
        axes.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode("ascii")}">'


def _label_chart(summary: MonthSummary, drift: Drift | None) -> str:
    current = shares(summary.labels)
    labels = sorted(current, key=lambda label: -current[label])
    previous = {shift.label: shift.previous for shift in drift.labels} if drift else {}
    labels += sorted(set(previous) - set(labels))

    def draw(axes) -> None:
        positions = np.arange(len(labels))
        width = 0.4 if drift else 0.8
        axes.bar(positions, [100 * current.get(label, 0) for label in labels], width, label="this month")
        if drift:
            axes.bar(positions + width, [100 * previous.get(label, 0) for label in labels], width,
                     label=drift.previous_month, color="#bbbbbb")
            # Above the bars, not on them: a legend inside the axes covered the fourth pair.
            axes.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.02), ncols=2)
        axes.set_xticks(positions + (width / 2 if drift else 0), labels, rotation=30, ha="right")
        axes.set_ylabel("% of scored images")

    return _chart(draw)


def _score_chart(summary: MonthSummary) -> str:
    def draw(axes) -> None:
        edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
        axes.bar(edges[:-1], summary.score_bins, width=1 / SCORE_BINS, align="edge", edgecolor="white")
        axes.set_xlabel("top-1 score")
        axes.set_ylabel("images")

    return _chart(draw)


def _bar_chart(values: dict[str, float], *, ylabel: str, limit: tuple[float, float] | None = None,
               counts: bool = False) -> str:
    names = sorted(values, key=lambda name: -values[name])

    def draw(axes) -> None:
        from matplotlib.ticker import MaxNLocator

        axes.bar(range(len(names)), [values[name] for name in names])
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axes.set_ylabel(ylabel)
        if limit:
            axes.set_ylim(*limit)
        if counts:  # images are counted in whole numbers: no 0.5 ticks
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))

    return _chart(draw)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _where(folder: BlobFolder | None, what: str) -> str:
    if folder is None:
        return f"<p>{html.escape(what)}: not given.</p>"
    return (f"<p>{html.escape(what)}: {html.escape(folder.describe())}. To list it (needs read access to the "
            f"container, e.g. the role Storage Blob Data Reader): <code>{html.escape(folder.list_command())}</code>"
            "</p>")


def _beside(names: tuple[str, ...]) -> str:
    """Links to the files published in the same folder: relative, so they open wherever the folder was copied."""
    return "<p>Published beside this report: " + ", ".join(
        f'<a href="{html.escape(name, quote=True)}">{html.escape(name)}</a>' for name in names) + ".</p>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; } td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; }
th { background: #f4f4f4; text-align: left; } .warning { background: #fff3cd; border: 1px solid #e0b000;
padding: 0.6rem 1rem; } .ok { background: #eef7ee; border: 1px solid #9c9; padding: 0.6rem 1rem; }
img { max-width: 100%; } .numbers td:nth-child(n+2) { text-align: right; }
"""


def write_report(folder: Path, summary: MonthSummary, *, month: str, model: str, job_name: str,
                 drift: Drift | None, previous_month: str, run: dict[str, Any] | None = None,
                 inputs: BlobFolder | None = None, outputs: BlobFolder | None = None,
                 beside: tuple[str, ...] = ()) -> Path:
    """Write `report.html` into `folder`. `run`: `duration_s`, `run_id`; `inputs`, `outputs`: where the month's
    images and published files are; `beside`: the other files published next to the report."""
    run = run or {}
    duration = run.get("duration_s")
    throughput = f"{summary.inputs / duration:.1f} images/s" if duration else "not reported by the job"
    facts = [
        ["images", summary.inputs],
        ["scored", f"{summary.scored} ({summary.scored / summary.inputs:.1%})" if summary.inputs else 0],
        ["errors", summary.errors],
        ["job run time", f"{duration:.1f} s" if duration else "not reported by the job"],
        ["throughput", throughput],
        ["model", model],
        ["job", job_name],
        ["Airflow run", run.get("run_id") or "-"],
    ]
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Scoring report {month}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Scoring report — {html.escape(month)}</h1>",
        _where(inputs, "Input images"),
        _where(outputs, "Published files"),
        _beside(beside) if beside else "",
        "<table class='numbers'>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                            for k, v in facts) + "</table>",
        "<h2>Drift against the previous month</h2>",
    ]
    if drift is None:
        parts.append(f"<p class='ok'>Nothing to compare with: no published month {html.escape(previous_month)}.</p>")
    else:
        verdict = "warning" if drift.warning else "ok"
        parts.append(f"<p class='{verdict}'>{'Warning: ' if drift.warning else ''}{html.escape(drift.describe())}"
                     "</p>")
        parts.append(_table(["label", f"share {drift.previous_month}", f"share {month}", "change (points)"],
                            [[shift.label, f"{shift.previous:.1%}", f"{shift.current:.1%}",
                              f"{shift.change_points:+.1f}"] for shift in drift.labels]))
    parts += ["<h2>Label mix</h2>", _label_chart(summary, drift) if summary.labels else "<p>No image scored.</p>",
              "<h2>Top-1 score</h2>", _score_chart(summary),
              "<h2>Mean top-1 score per label</h2>",
              _bar_chart(summary.mean_scores(), ylabel="mean score", limit=(0, 1)) if summary.labels else "",
              "<h2>Errors by type</h2>"]
    if summary.errors_by_type:
        parts.append(_bar_chart(summary.errors_by_type, ylabel="images", counts=True))
        parts.append(_table(["error_type", "images", "example image", "message"],
                            [[error_type, count, *summary.error_examples[error_type]]
                             for error_type, count in sorted(summary.errors_by_type.items(),
                                                             key=lambda item: (-item[1], item[0]))]))
    else:
        parts.append("<p>None.</p>")
    parts.append(f"<h2>The {len(summary.lowest)} lowest-confidence images</h2>")
    parts.append(_table(["image", "label", "score"],
                        [[image, label, f"{score:.4f}"] for image, label, score in summary.lowest]))
    parts.append("</body></html>")
    path = folder / REPORT_FILE
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path

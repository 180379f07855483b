"""Publishing a month of a million rows: validation and the report's summary, time and peak memory.

In a child process: validate and summarize a million-row predictions.csv once for the time,
then once under tracemalloc for the peak of what they allocate (numpy and pandas included),
beside the process's RSS after its imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = 1_000_000


def name(index: int) -> str:
    return f"camera-{index % 7}/2026-10/IMG_{index:09d}.jpg"


def write_month(folder: Path, rows: int = ROWS) -> Path:
    import numpy as np
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "predictions.csv").is_file():
        return folder
    images = sorted(name(index) for index in range(rows))
    labels = np.array(["circle", "square", "triangle", "cross"])[np.arange(rows) % 4]
    frame = pd.DataFrame({"image": images, "label": labels, "score": np.linspace(0.3, 1.0, rows).round(6),
                          "model_name": "bench", "model_version": "1", "month": "202610"})
    frame.to_csv(folder / "predictions.csv", index=False, lineterminator="\r\n")
    (folder / "errors.csv").write_text("image,error_type,message\r\n", encoding="utf-8")
    return folder


def _child(folder: str, rows: int) -> None:
    import tracemalloc

    import psutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from batch_scoring.validation import validate_outputs
    from batch_scoring.report import summarize

    class Inputs:  # the blob listing: streamed, never a list
        def __iter__(self):
            return (name(index) for index in range(rows))

    def publish_checks() -> None:
        counts = validate_outputs(Path(folder), Inputs(), month="202610", model_name="bench", model_version="1")
        summary = summarize(Path(folder))
        assert counts.scored == rows and summary.scored == rows

    imported_mb = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    publish_checks()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    publish_checks()
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(json.dumps({"seconds": round(seconds, 2), "peak_allocated_mb": round(peak_mb, 1),
                      "rss_after_imports_mb": round(imported_mb)}))


def measure(state: Path, rows: int = ROWS) -> dict:
    folder = write_month(state / f"validation-{rows}", rows)

    output = subprocess.run([sys.executable, "-m", "bench.validation", str(folder), str(rows)], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return {"rows": rows, **json.loads(output.stdout.strip().splitlines()[-1])}


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))

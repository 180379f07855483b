"""Memory of the job's main process against the size of the month: flat, or it grows per item.

The CLI scores a folder of zero-byte files (each becomes an `empty` error row, so
the workers cost nothing and the main process's bookkeeping is all that is
measured): peak RSS of the main process alone (its workers are other processes)
at `small` and at `large` items. Target: large / small <= 1.2.

    python -m bench.flat_memory --small 10000 --large 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE = PROJECT_ROOT / ".state" / "bench"
MINI_BATCH_SIZE = 500  # fewer round trips to the workers; the bookkeeping per item is what is measured


def empty_files(folder: Path, count: int) -> Path:
    """`count` zero-byte files in one folder, made once (a million take about a minute)."""
    done = folder.with_name(folder.name + ".complete")  # beside it: not an input
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (folder / f"{index:07d}.jpg").touch()
        done.touch()
    return folder


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux VmHWM), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main_process_peak_mb(folder: Path, model_dir: Path) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="bench-flat-") as out:
        command = [sys.executable, "-m", "scoring", "score", "--input", str(folder), "--model", str(model_dir),
                   "--out", out, "--month", "209901", "--logging_level", "WARNING", "--error_threshold", "-1",
                   "--mini_batch_size", str(MINI_BATCH_SIZE)]
        started = time.perf_counter()
        process = psutil.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        peak = 0
        while process.poll() is None:
            try:
                peak = max(peak, _peak_rss(process.pid))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.2)
        output = process.stdout.read().decode()
        if process.returncode != 0:
            raise RuntimeError("scoring the empty files failed:\n" + output[-3000:])
        with open(Path(out) / "errors.csv", encoding="utf-8") as handle:
            errors = sum(1 for _ in handle) - 1
    return peak / 2**20, {"errors": errors, "seconds": round(time.perf_counter() - started, 1)}


def measure(state: Path, model_dir: Path, small: int, large: int) -> dict:
    results = {}
    for count in (small, large):
        peak, counts = main_process_peak_mb(empty_files(state / f"empty-x{count}", count), model_dir)
        if counts["errors"] != count:
            raise RuntimeError(f"{count} empty files gave {counts['errors']} error rows")
        print(f"{count} zero-byte inputs: main process peak RSS {peak:.0f} MB {counts}", flush=True)
        results[count] = (peak, counts)
    return {"small_items": small, "large_items": large,
            "main_peak_rss_mb_small": round(results[small][0]), "main_peak_rss_mb_large": round(results[large][0]),
            "main_rss_growth": round(results[large][0] / results[small][0], 3),
            "seconds_large": results[large][1]["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--state", type=Path, default=STATE)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the bench's ResNet-18)")
    args = parser.parse_args()
    from bench.run import bench_model

    model_dir = args.model or bench_model(args.state, "resnet18", "cpu")
    print(json.dumps(measure(args.state, model_dir, args.small, args.large)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

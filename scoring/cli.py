"""`python -m scoring score`: score a folder (or a blob folder) without Airflow, with the job's own runner.

Writes `predictions.csv` and `errors.csv` (DESIGN.md) to --out, with the same
mini-batches, thresholds, retries and progress lines as a job. Run it again with
the same --out to resume: finished mini-batches are kept.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

from scoring.constants import DEFAULT_MAX_PIXELS, PRECISIONS
from scoring.job_settings import JobSettings, JobSettingsError
from scoring.merge import ErrorThresholdExceeded
from scoring.parallel_runner import ParallelJob, ParallelJobFailed, run_parallel_job

CODE_ROOT = Path(__file__).resolve().parent.parent
ENTRY_SCRIPT = Path(__file__).resolve().parent / "entry.py"
WORK_DIR = ".scoring-work"
_MONTH = re.compile(r"^\d{4}(0[1-9]|1[0-2])$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score every file under a folder", description=__doc__)
    score.add_argument("--input", required=True,
                       help="local folder, or blob folder URL (https://<account>.blob.core.windows.net/<container>/<prefix>, "
                            "or an Azurite URL); blob credentials from AZURE_STORAGE_CONNECTION_STRING, "
                            "else azure-identity's DefaultAzureCredential")
    score.add_argument("--model", required=True, type=Path, help="model folder (weights.pt + metadata.json)")
    score.add_argument("--out", required=True, type=Path, help="folder for predictions.csv and errors.csv")
    score.add_argument("--month", default=None,
                       help="YYYYMM written in every row; default: the input folder's name when it is one")
    defaults = JobSettings()
    job = score.add_argument_group("job settings (as in Azure ML's parallel job)")
    job.add_argument("--mini_batch_size", type=int, default=defaults.mini_batch_size, help="files per mini-batch")
    job.add_argument("--mini_batch_error_threshold", type=int, default=defaults.mini_batch_error_threshold,
                     help="failed mini-batches tolerated (-1: no limit)")
    job.add_argument("--error_threshold", type=int, default=defaults.error_threshold,
                     help="failed images tolerated (-1: no limit)")
    job.add_argument("--max_retries", type=int, default=defaults.max_retries, help="retries of a failed mini-batch")
    job.add_argument("--timeout", type=int, default=defaults.timeout, help="seconds one mini-batch may take")
    job.add_argument("--workers", type=int, default=defaults.max_concurrency_per_instance,
                     help="worker processes (max_concurrency_per_instance), each loading the model once")
    job.add_argument("--logging_level", default=defaults.logging_level, help="DEBUG, INFO, WARNING…")
    speed = score.add_argument_group("scoring")
    speed.add_argument("--batch_size", type=int, default=32, help="images per forward pass")
    speed.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32, or autocast bf16 (CPU or GPU) / fp16 (GPU)")
    speed.add_argument("--channels_last", action="store_true", help="NHWC layout: faster convolutions")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the model: ~18 s per worker up front, ~18 %% faster forward on CPU")
    speed.add_argument("--decode_threads", type=int, default=None, help="decoding threads per worker (0: decode inline; default: up to 4)")
    speed.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    speed.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb limit")
    speed.add_argument("--progress_interval", type=float, default=10.0, help="seconds between progress lines")
    return parser


def stage_input(location: str, work_dir: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A local folder as is; a blob folder downloaded under the work folder."""
    if not location.startswith(("http://", "https://")):
        folder = Path(location)
        if not folder.is_dir():
            raise SystemExit(f"error: input folder {folder} does not exist")
        return folder, {}
    from scoring.blob_inputs import container_client_for_url, download_prefix

    container, prefix = container_client_for_url(location)
    destination = work_dir / "inputs"
    _count, unsafe = download_prefix(container, prefix, destination)
    return destination, {item: ("unreadable", why) for item, why in unsafe.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings = JobSettings(
            mini_batch_size=args.mini_batch_size, mini_batch_error_threshold=args.mini_batch_error_threshold,
            error_threshold=args.error_threshold, max_retries=args.max_retries, timeout=args.timeout,
            max_concurrency_per_instance=args.workers, logging_level=args.logging_level,
        )
    except JobSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work_dir = args.out / WORK_DIR
    input_root, known_failures = stage_input(args.input, work_dir)
    month = args.month
    if month is None:
        name = urlparse(args.input).path.rstrip("/").rsplit("/", 1)[-1] if "://" in args.input else input_root.name
        month = name if _MONTH.match(name) else ""
    program_arguments = [
        "--model_dir", str(args.model.resolve()), "--month", month, "--input_root", str(input_root.resolve()),
        "--batch_size", str(args.batch_size), "--precision", args.precision, "--max_pixels", str(args.max_pixels),
    ]
    if args.channels_last:
        program_arguments.append("--channels_last")
    if args.compile:
        program_arguments.append("--compile")
    if args.decode_threads is not None:
        program_arguments += ["--decode_threads", str(args.decode_threads)]
    if args.device:
        program_arguments += ["--device", args.device]
    job = ParallelJob(
        entry_script=ENTRY_SCRIPT, code_root=CODE_ROOT, input_root=input_root.resolve(), work_dir=work_dir,
        output_dir=args.out, program_arguments=tuple(program_arguments), settings=settings,
        progress_interval_s=args.progress_interval, known_failures=known_failures,
    )
    try:
        result = run_parallel_job(job)
    except (ParallelJobFailed, ErrorThresholdExceeded) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{result.inputs} images: {result.scored} scored, {result.errors} errors -> "
          f"{args.out / 'predictions.csv'}, {args.out / 'errors.csv'}")
    return 0

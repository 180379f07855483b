"""`python -m scoring score`: score a folder (or a blob folder) without Airflow, with the job's own runner.

Writes `predictions.csv` and `errors.csv` (docs/contracts.md) to --out, with the same
settings, defaults, mini-batches, thresholds, retries and progress lines as a job. Run it again with
the same --out to resume: finished mini-batches are kept.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from scoring.items import InputItem, StorageUnavailable, walk_folder
from scoring.job_settings import LOCAL, PARALLEL, PROFILE, JobSettingsError, add_cli_options, from_namespace
from scoring.merge import ErrorThresholdExceeded, MergeResult
from scoring.model_metadata import ModelFolderError, read_metadata
from scoring.parallel_runner import ROWS_DIR, ParallelJob, ParallelJobFailed, run_parallel_job
from scoring.reuse import scoring_key

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
    add_cli_options(score.add_argument_group(f"{PARALLEL.lower()} (as in Azure ML's parallel job)"), PARALLEL)
    add_cli_options(score.add_argument_group(PROFILE.lower()), PROFILE)
    add_cli_options(score.add_argument_group(LOCAL.lower()), LOCAL)
    score.add_argument("--progress_interval", type=float, default=10.0, help="seconds between progress lines")
    check = commands.add_parser(
        "check-precision", help="measure reduced precisions' top-1 agreement with fp32 and record it in the model",
        description="Score the images in fp32, bf16 and fp16 and write the top-1 agreement into the model's "
                    "metadata.json; precision=auto uses a reduced precision only where it is >= 99.5%%.")
    check.add_argument("--model", required=True, type=Path, help="model folder (weights.pt + metadata.json)")
    check.add_argument("--input", required=True, type=Path, help="folder of representative images")
    check.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run the comparison")
    return parser


def stage_input(location: str, work_dir: Path, outage_s: float) -> tuple[Path, Iterator[InputItem]]:
    """A local folder as is; a blob folder downloaded under the work folder, items arriving as they land."""
    if not location.startswith(("http://", "https://")):
        folder = Path(location)
        if not folder.is_dir():
            raise SystemExit(f"error: input folder {folder} does not exist")
        return folder, walk_folder(folder)
    from scoring.blob_inputs import container_client_for_url, fetch_prefix

    container, prefix = container_client_for_url(location)
    destination = work_dir / "inputs"
    return destination, fetch_prefix(container, prefix, destination, outage_s=outage_s)


def check_precision(args: argparse.Namespace) -> int:
    from scoring.precision_check import record_agreement

    files = sorted(str(path) for path in args.input.rglob("*") if path.is_file())
    record = record_agreement(args.model, files, device=args.device)
    print(f"top-1 agreement with fp32 on {args.input}: "
          + ", ".join(f"{precision} {value:.2%}" for precision, value in sorted(record.items()))
          + f"; recorded in {args.model / 'metadata.json'}")
    return 0


def score(args: argparse.Namespace, settings) -> MergeResult:
    work_dir = args.out / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    input_root, items = stage_input(args.input, work_dir, settings.storage_timeout)
    month = args.month
    if month is None:
        name = urlparse(args.input).path.rstrip("/").rsplit("/", 1)[-1] if "://" in args.input else input_root.name
        month = name if _MONTH.match(name) else ""
    read_metadata(args.model)  # a broken model folder fails here, in one line, before any worker starts
    program_arguments = [
        "--model_dir", str(args.model.resolve()), "--month", month, "--input_root", str(input_root.resolve()),
        *settings.program_arguments(),
    ]
    job = ParallelJob(
        entry_script=ENTRY_SCRIPT, code_root=CODE_ROOT, input_root=input_root.resolve(), work_dir=work_dir,
        output_dir=args.out, program_arguments=tuple(program_arguments), settings=settings,
        progress_interval_s=args.progress_interval, rows_dir=work_dir / ROWS_DIR,
        scoring_key=scoring_key(args.model, month, settings),
    )
    return run_parallel_job(job, items)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-precision":
        return check_precision(args)
    logging.basicConfig(level=args.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # its DEBUG lines would print the read SAS
    try:
        settings = from_namespace(args)
    except JobSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = score(args, settings)
    except (ParallelJobFailed, ErrorThresholdExceeded, StorageUnavailable, ModelFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a read-only or full --out, a missing model file: one line, no traceback
        print(f"error: cannot use {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"{result.inputs} images: {result.scored} scored, {result.errors} errors -> "
          f"{args.out / 'predictions.csv'}, {args.out / 'errors.csv'}")
    return 0

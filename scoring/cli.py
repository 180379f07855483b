"""`python -m scoring`: score a folder without Airflow, and bring a model into the form the job loads.

Commands:
- `score`: every file under a folder (or a blob folder) with the job's own runner, settings and defaults;
  writes `predictions.csv` and `errors.csv` to --out. Run it again on the same --out to resume.
- `import-model`: a pickled model, a TorchScript file or a state dict + architecture -> a `.pt2` folder.
- `describe-model`: what the job will use of a model: format, classes, input size, preprocessing.
- `check-precision`: measure reduced precisions' top-1 agreement with fp32 and record it in the model.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from scoring.items import InputItem, StorageUnavailable, walk_folder
from scoring.job_settings import LOCAL, OUTPUTS, PARALLEL, PROFILE, JobSettingsError, add_cli_options, from_namespace
from scoring.merge import ErrorThresholdExceeded, MergeResult
from scoring.model_metadata import ModelFolderError
from scoring.month import InvalidMonth, is_month, validate_month
from scoring.parallel_runner import ROWS_DIR, ParallelJob, ParallelJobFailed, run_parallel_job
from scoring.progress import PROGRESS_FILE

CODE_ROOT = Path(__file__).resolve().parent.parent
ENTRY_SCRIPT = Path(__file__).resolve().parent / "entry.py"
WORK_DIR = ".scoring-work"
LOCK_FILE = "lock"
MODEL_DIR = "model"


class UsageError(RuntimeError):
    """A command line the CLI refuses before doing anything; the message is the one line to show."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="score every file under a folder",
        description="Score every file under --input with the job's own runner, settings and defaults; writes "
                    "predictions.csv and errors.csv to --out. Run it again on the same --out to resume: finished "
                    "rows are kept.")
    score.add_argument("--input", required=True,
                       help="local folder, or blob folder URL (https://<account>.blob.core.windows.net/<container>/<prefix>, "
                            "or an Azurite URL); blob credentials from AZURE_STORAGE_CONNECTION_STRING, "
                            "else azure-identity's DefaultAzureCredential")
    score.add_argument("--model", required=True, type=Path,
                       help="the model: a .pt2 program, a TorchScript file, or a folder with one of them or a state "
                            "dict (weights.pt) and metadata.json")
    score.add_argument("--out", required=True, type=Path,
                       help="folder for predictions.csv and errors.csv (not inside --input)")
    score.add_argument("--month", default=None,
                       help="YYYYMM written in every row; default: the input folder's name when it is one")
    score.add_argument("--model_name", default=None, help="model name written in every row (default: the metadata's, "
                                                          "else the model file's name)")
    score.add_argument("--model_version", default=None, help="model version written in every row (default: the "
                                                             "metadata's, else 0)")
    add_cli_options(score.add_argument_group(f"{PARALLEL.lower()} (as in Azure ML's parallel job)"), PARALLEL)
    add_cli_options(score.add_argument_group(PROFILE.lower()), PROFILE)
    add_cli_options(score.add_argument_group(OUTPUTS.lower()), OUTPUTS)
    add_cli_options(score.add_argument_group(LOCAL.lower()), LOCAL)
    score.add_argument("--progress_interval", type=float, default=10.0, help="seconds between progress lines")

    from scoring.model_import import add_import_arguments

    add_import_arguments(commands.add_parser(
        "import-model", help="turn a pickled model, a TorchScript file or a state dict into a .pt2 model folder",
        description="Export a model to a torch.export program (.pt2) with a dynamic batch dimension, with its "
                    "metadata.json, check that it gives the original's outputs, and print the commands that "
                    "register it."))
    describe = commands.add_parser("describe-model", help="what the job will use of a model",
                                   description="Load a model as the job does and say what it will use: format, "
                                               "classes, input size, batch, preprocessing, precision record.")
    describe.add_argument("model", type=Path, help="a model file or folder")

    check = commands.add_parser(
        "check-precision", help="measure reduced precisions' top-1 agreement with fp32 and record it in the model",
        description="Score the images in fp32, bf16 and fp16 and write the top-1 agreement into the model's "
                    "metadata.json; precision=auto uses a reduced precision only where it is at least 99.5%%.")
    check.add_argument("--model", required=True, type=Path, help="model folder")
    check.add_argument("--input", required=True, type=Path, help="folder of representative images")
    check.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run the comparison")
    return parser


def stage_input(location: str, work_dir: Path, outage_s: float) -> tuple[Path, Iterator[InputItem]]:
    """A local folder as is; a blob folder downloaded under the work folder, items arriving as they land."""
    if not location.startswith(("http://", "https://")):
        folder = Path(location)
        if not folder.is_dir():
            raise UsageError(f"input folder {folder} does not exist")
        return folder, walk_folder(folder)
    from scoring.blob_inputs import STORAGE_ENV, container_client_for_url, fetch_prefix

    container, prefix = container_client_for_url(location)
    os.environ.pop(STORAGE_ENV, None)  # the workers read local files: they inherit no storage credential
    destination = work_dir / "inputs"
    return destination, fetch_prefix(container, prefix, destination, outage_s=outage_s)


def check_out_folder(input_location: str, out: Path) -> None:
    """--out inside --input would score the run's own CSVs and work files on the next run."""
    if input_location.startswith(("http://", "https://")):
        return
    source, target = Path(input_location).resolve(), out.resolve()
    if target == source or source in target.parents:
        raise UsageError(f"--out {out} is inside --input {input_location}: its CSVs and work files would be scored "
                         "as images on the next run; choose a folder outside the input")


def lock_out_folder(work_dir: Path) -> int:
    """Hold --out for this run; a second run on the same --out fails at once instead of interleaving."""
    work_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(handle)
        raise UsageError(f"--out {work_dir.parent} is in use by another run (pid {holder}); wait for it to end or "
                         "use another --out") from None
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
    return handle


def month_of_input(args: argparse.Namespace, input_root: Path) -> str:
    if args.month is not None:
        return validate_month(args.month)
    name = urlparse(args.input).path.rstrip("/").rsplit("/", 1)[-1] if "://" in args.input else input_root.name
    return name if is_month(name) else ""


def score(args: argparse.Namespace, settings) -> MergeResult:
    from scoring.atomic_write import write_json
    from scoring.model_format import model_identity
    from scoring.model_snapshot import snapshot_model
    from scoring.reuse import scoring_key

    if args.month is not None:
        validate_month(args.month)
    check_out_folder(args.input, args.out)
    work_dir = args.out / WORK_DIR
    lock = lock_out_folder(work_dir)
    try:
        # One read of the model for the whole run: every worker loads this copy (a broken model fails here).
        model = snapshot_model(args.model, work_dir / MODEL_DIR)
        name, version = model_identity(args.model, args.model_name, args.model_version)
        input_root, items = stage_input(args.input, work_dir, settings.storage_timeout)
        month = month_of_input(args, input_root)
        program_arguments = [
            "--model_dir", str(model.path.resolve()), "--model_name", name, "--model_version", version,
            "--month", month, "--input_root", str(input_root.resolve()), *settings.program_arguments(),
        ]
        job = ParallelJob(
            entry_script=ENTRY_SCRIPT, code_root=CODE_ROOT, input_root=input_root.resolve(), work_dir=work_dir,
            output_dir=args.out, program_arguments=tuple(program_arguments), settings=settings,
            progress_interval_s=args.progress_interval, rows_dir=work_dir / ROWS_DIR,
            scoring_key=scoring_key(model, name, version, month, settings), model_digest=model.digest,
            on_progress=lambda snapshot: write_json(work_dir / PROGRESS_FILE, snapshot),
        )
        return run_parallel_job(job, items)
    finally:
        os.close(lock)


def describe_model(args: argparse.Namespace) -> int:
    from scoring.model import load_model

    loaded = load_model(args.model)
    metadata = loaded.metadata
    labels = metadata.labels or ()
    named = "named in metadata.json" if metadata.labels and loaded.metadata.labels != tuple(
        str(index) for index in range(len(labels))) else "class indices (no labels in metadata.json)"
    agreement = ", ".join(f"{key} {value:.2%}" for key, value in sorted(metadata.precision_agreement.items()))
    print(f"model     {loaded.path}")
    print(f"format    {loaded.format} (sha256 {loaded.digest[:16]})")
    print(f"classes   {len(labels)}, {named}: {', '.join(labels[:10])}{' ...' if len(labels) > 10 else ''}")
    print(f"outputs   {'multi-label: sigmoid per class, threshold ' + str(metadata.threshold) if metadata.multi_label else 'one class per image: softmax' if metadata.activation == 'softmax' else 'the model outputs probabilities'}")
    print(f"input     3x{metadata.preprocessing.side}x{metadata.preprocessing.side}, "
          f"{'batch fixed at ' + str(loaded.fixed_batch) if loaded.fixed_batch else 'any batch size'}")
    print(f"preproc.  {metadata.preprocessing.describe()}")
    print(f"precision {agreement or 'no agreement recorded: precision=auto scores in fp32 (check-precision)'}")
    return 0


def check_precision(args: argparse.Namespace) -> int:
    from scoring.precision_check import record_agreement

    files = sorted(str(path) for path in args.input.rglob("*") if path.is_file())
    record = record_agreement(args.model, files, device=args.device)
    print(f"top-1 agreement with fp32 on {args.input}: "
          + ", ".join(f"{precision} {value:.2%}" for precision, value in sorted(record.items()))
          + f"; recorded in {args.model / 'metadata.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "logging_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # its DEBUG lines would print the read SAS
    try:
        if args.command == "check-precision":
            return check_precision(args)
        if args.command == "describe-model":
            return describe_model(args)
        if args.command == "import-model":
            from scoring.model_import import import_model_command

            return import_model_command(args)
        settings = from_namespace(args)
        result = score(args, settings)
    except (JobSettingsError, InvalidMonth, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ParallelJobFailed, ErrorThresholdExceeded, StorageUnavailable, ModelFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a read-only or full --out, a missing model file: one line, no traceback
        print(f"error: cannot use {error.filename or getattr(args, 'out', '')}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    print(f"{result.inputs} images: {result.scored} scored, {result.errors} errors -> "
          f"{args.out / 'predictions.csv'}, {args.out / 'errors.csv'}")
    return 0

"""The parallel job's entry script: `init()` once per worker, `run(mini_batch)` per mini-batch.

The same file runs on Azure ML (`parallel_run_function(entry_script="entry.py")`)
and in the local runner. Its arguments arrive on the command line, as Azure ML
passes `program_arguments`: the model (its path, and the registered name and
version every row carries), the month, and the job's scoring profile and outputs
(`JobSettings.program_arguments`); anything it does not know is left alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Loaded by path, as Azure ML's parallel driver loads `scoring/entry.py`: make `scoring` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.job_settings import WORKER_GROUPS, JobSettings, add_cli_options, from_namespace
from scoring.mini_batch import MiniBatchScorer, Stamp

_scorer: MiniBatchScorer | None = None


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, JobSettings]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model_dir", required=True, help="registered model (a file or a folder)")
    parser.add_argument("--model_name", default=None, help="registered model name (default: the metadata's)")
    parser.add_argument("--model_version", default=None, help="registered model version (default: the metadata's)")
    parser.add_argument("--input_root", default=None, help="month folder; image ids are relative to it")
    parser.add_argument("--month", required=True, help="YYYYMM, written into every row")
    parser.add_argument("--max_concurrency_per_instance", type=int, default=JobSettings().max_concurrency_per_instance,
                        help="workers sharing this node's cores")
    for group in WORKER_GROUPS:
        add_cli_options(parser, group)
    args, _unknown = parser.parse_known_args(argv)
    return args, from_namespace(args)


def init() -> str:
    """Load the model once for this worker; returns the resolved scoring profile as one short line.

    Azure ML ignores what init() returns; the local runner shows it as the job's profile (the reasons
    for each automatic choice are in the worker's log line).
    """
    global _scorer
    from scoring.model_format import model_identity

    args, settings = parse_arguments()
    name, version = model_identity(Path(args.model_dir), args.model_name, args.model_version)
    stamp = Stamp(model_name=name, model_version=version, month=args.month)
    _scorer = MiniBatchScorer(model_dir=args.model_dir, stamp=stamp, input_root=args.input_root, settings=settings)
    logging.getLogger(__name__).info("init done")
    resolved = dataclasses.replace(_scorer.profile, batch_size=_scorer.batch_size)  # a fitted batch is known now
    return f"scoring profile {resolved.describe(reasons=False)}"


def run(mini_batch: list[str]) -> list[str]:
    if _scorer is None:
        raise RuntimeError("run() called before init()")
    return _scorer.score([str(path) for path in mini_batch])

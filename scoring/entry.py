"""The parallel job's entry script: `init()` once per worker, `run(mini_batch)` per mini-batch.

The same file runs on Azure ML (`parallel_run_function(entry_script="entry.py")`)
and in the local runner. Its arguments arrive on the command line, as Azure ML
passes `program_arguments`: the model, the month, and the job's scoring profile
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

from scoring.job_settings import PROFILE, JobSettings, add_cli_options, from_namespace
from scoring.mini_batch import MiniBatchScorer

_scorer: MiniBatchScorer | None = None


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, JobSettings]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model_dir", required=True, help="registered model folder")
    parser.add_argument("--input_root", default=None, help="month folder; image ids are relative to it")
    parser.add_argument("--month", required=True, help="YYYYMM, written into every row")
    parser.add_argument("--max_concurrency_per_instance", type=int, default=JobSettings().max_concurrency_per_instance,
                        help="workers sharing this node's cores")
    add_cli_options(parser, PROFILE)
    args, _unknown = parser.parse_known_args(argv)
    return args, from_namespace(args)


def init() -> str:
    """Load the model once for this worker; returns the resolved scoring profile as one short line.

    Azure ML ignores what init() returns; the local runner shows it as the job's profile (the reasons
    for each automatic choice are in the worker's log line).
    """
    global _scorer
    args, settings = parse_arguments()
    _scorer = MiniBatchScorer(model_dir=args.model_dir, month=args.month, input_root=args.input_root,
                              settings=settings)
    logging.getLogger(__name__).info("init done")
    resolved = dataclasses.replace(_scorer.profile, batch_size=_scorer.batch_size)  # a fitted batch is known now
    return f"scoring profile {resolved.describe(reasons=False)}"


def run(mini_batch: list[str]) -> list[str]:
    if _scorer is None:
        raise RuntimeError("run() called before init()")
    return _scorer.score([str(path) for path in mini_batch])

"""The parallel job's entry script: `init()` once per worker, `run(mini_batch)` per mini-batch.

The same file runs on Azure ML (`parallel_run_function(entry_script="entry.py")`)
and in the local runner. Its arguments arrive on the command line, as Azure ML
passes `program_arguments`; anything it does not know is left alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Loaded by path, as Azure ML's parallel driver loads `scoring/entry.py`: make `scoring` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.constants import DEFAULT_MAX_PIXELS, PRECISIONS
from scoring.mini_batch import MiniBatchScorer

_scorer: MiniBatchScorer | None = None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model_dir", required=True, help="registered model folder")
    parser.add_argument("--input_root", default=None, help="month folder; image ids are relative to it")
    parser.add_argument("--month", required=True, help="YYYYMM, written into every row")
    parser.add_argument("--batch_size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb limit")
    parser.add_argument("--device", default=None, help="torch device; default: cuda when present")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32, or autocast bf16/fp16")
    parser.add_argument("--channels_last", action="store_true", help="NHWC layout (faster convolutions)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays on long runs)")
    parser.add_argument("--decode_threads", type=int, default=None, help="threads decoding ahead of the model")
    args, _unknown = parser.parse_known_args()
    return args


def init() -> None:
    global _scorer
    args = _arguments()
    _scorer = MiniBatchScorer(
        model_dir=args.model_dir,
        month=args.month,
        input_root=args.input_root,
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        decode_threads=args.decode_threads,
        compile=args.compile,
    )
    logging.getLogger(__name__).info("init done")


def run(mini_batch: list[str]) -> list[str]:
    if _scorer is None:
        raise RuntimeError("run() called before init()")
    return _scorer.score([str(path) for path in mini_batch])

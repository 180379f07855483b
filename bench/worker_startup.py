"""Where a worker's start-up goes: `python -m bench.worker_startup --model DIR --input DIR` on a GPU node.

One fresh process, as each worker is, timed step by step (seconds each, in this order):
- import_torch_s: importing torch and torchvision;
- cuda_context_s: the first CUDA operation (the context; 0 on the CPU);
- import_scoring_s: the scoring engine's modules;
- scorer_init_s: what `init()` builds (`MiniBatchScorer`), split in `init_steps` as the job log's `init:` line
  splits it: capabilities (the node probed, CUDA initialised), model (loaded and placed), batch_fit (the
  batch fitted to the GPU by a first forward), decoder (chosen: `decoder=auto`'s probe);
- first_mini_batch_s, second_mini_batch_s: `run()` on the first and the second `--mini-batch` files; the first
  pays what the second does not (cuDNN's first convolutions at the batch's shape, nvJPEG's set-up).
`--concurrent N` starts N such processes at once, as a node starts its workers, and reports each (they
share the cores and the GPU while they start; `slowest_total_s` is what the job waits for).
On a 20,000-file run on 4 cores the workers' start-up was 10-15 s of 13-17 s (docs/performance.md); this says
which steps those seconds are. JSON on stdout.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before torch is imported: its import is the first step

import argparse  # noqa: E402 - timed from above
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from scoring.step_times import StepTimes  # noqa: E402 - imports nothing heavy


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder")
    parser.add_argument("--input", type=Path, required=True, help="a folder of images (two mini-batches' worth)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--decoder", default="auto", choices=("auto", "pillow", "torchvision"))
    parser.add_argument("--workers", type=int, default=4, help="the node's workers this one shares the GPU with")
    parser.add_argument("--mini-batch", type=int, default=64, help="files per run() call")
    parser.add_argument("--concurrent", type=int, default=1, help="processes started at once, as a node's workers")
    args = parser.parse_args()
    if args.concurrent > 1:
        return concurrent(args)
    steps = StepTimes(_STARTED)

    import torch
    import torchvision  # noqa: F401 - the engine imports it too

    steps.step("import_torch_s")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    steps.step("cuda_context_s")
    from scoring.job_settings import JobSettings
    from scoring.mini_batch import MiniBatchScorer, Stamp

    steps.step("import_scoring_s")
    files = sorted(str(path) for path in args.input.iterdir() if path.is_file())[:2 * args.mini_batch]
    if len(files) < 2 * args.mini_batch:
        raise SystemExit(f"--input {args.input}: needs {2 * args.mini_batch} files, has {len(files)}")
    settings = JobSettings(device=device, decoder=args.decoder, max_concurrency_per_instance=args.workers,
                           mini_batch_size=args.mini_batch)
    scorer = MiniBatchScorer(model_dir=args.model, stamp=Stamp("startup", "1", "209901"),
                             input_root=str(args.input), settings=settings)
    steps.step("scorer_init_s")
    for name, chunk in (("first_mini_batch_s", files[:args.mini_batch]), ("second_mini_batch_s", files[args.mini_batch:])):
        rows = scorer.score(chunk)
        if device == "cuda":
            torch.cuda.synchronize()
        steps.step(name)
        if len(rows) != len(chunk):
            raise SystemExit(f"{name}: {len(rows)} rows for {len(chunk)} files")
    print(json.dumps({"device": device, "profile": scorer.profile.describe(reasons=False),
                      "batch_size": scorer.batch_size, "steps": steps, "init_steps": scorer.init_steps,
                      "total_s": round(time.perf_counter() - _STARTED, 3)}))
    return 0


def concurrent(args: argparse.Namespace) -> int:
    """`args.concurrent` copies of this command at once (without --concurrent): each one's report, and the
    slowest total."""
    command = [sys.executable, "-m", "bench.worker_startup", "--model", str(args.model), "--input", str(args.input),
               "--device", args.device, "--decoder", args.decoder, "--workers", str(args.workers),
               "--mini-batch", str(args.mini_batch)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.concurrent)]
    reports = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a concurrent worker start-up failed (exit code {process.returncode})")
        reports.append(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps({"concurrent": args.concurrent, "slowest_total_s": max(r["total_s"] for r in reports),
                      "workers": reports}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

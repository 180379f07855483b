"""Which worker layout feeds a GPU best: `python -m bench.gpu_sweep` on a CUDA host.

Runs the CLI end to end on the bench images for several layouts, written
`workers:decode_threads:mini_batch_size` (-1: the job's rule for that count; 0 threads: inline), per model,
with `--decoder` and the precision auto picks, and prints for each:
- img_s: `--images` files end to end, start-up included, as `pipeline_img_s` is defined;
- workers_ready_s: of those seconds, the start-up, as the job's progress data records it (until every worker
  had finished init());
- steady_img_s and startup_s, from a second run on `--startup-images` files: with t = startup_s + n / steady_img_s
  for both runs, the rate once the workers are up and what starting them costs.
`--cores N` pins the sweep, and every worker it starts, to this host's first N cores (a node of N vCPUs);
`--out F` is rewritten after every layout, so a run cut short keeps what it measured. The evidence behind the
worker rule for GPU nodes in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.dataset import ensure_images, linked_copies
from bench.run import STATE, bench_model, run_pipeline

DEFAULT_LAYOUTS = ("2:-1:32", "4:3:64", "8:1:64", "8:0:64", "16:0:64", "12:0:128")


def layout(text: str) -> tuple[int, int, int | None]:
    """'workers:decode_threads:mini_batch_size'; without the mini-batch, the job's default."""
    try:
        parts = [int(part) for part in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(None)
    if len(parts) != 3 or parts[0] < 1 or (parts[2] is not None and parts[2] < 1):
        raise argparse.ArgumentTypeError(f"{text!r}: write workers:decode_threads[:mini_batch_size], e.g. 4:0:64")
    return parts[0], parts[1], parts[2]


def steady_state(images: int, seconds: float, few: int, few_seconds: float) -> tuple[float | None, float | None]:
    """(img/s once running, start-up s) from two runs that differ only in their file count; None where the
    larger run was not slower (too few files to tell)."""
    if seconds <= few_seconds or images <= few:
        return None, None
    rate = (images - few) / (seconds - few_seconds)
    return rate, max(0.0, few_seconds - few / rate)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="?", type=int, default=4000, help="images per layout (default 4000)")
    parser.add_argument("--layouts", nargs="+", type=layout, default=[layout(text) for text in DEFAULT_LAYOUTS],
                        metavar="W:T[:M]", help="workers:decode_threads[:mini_batch_size] (default: "
                        + " ".join(DEFAULT_LAYOUTS) + ")")
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--decoder", default="auto", choices=("auto", "pillow", "torchvision"))
    parser.add_argument("--cores", type=int, default=0, help="pin to this host's first N cores (0: all)")
    parser.add_argument("--startup-images", type=int, default=0,
                        help="files of a second, smaller run per layout for steady_img_s and startup_s (0: none)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run")
    parser.add_argument("--state", type=Path, default=STATE)
    parser.add_argument("--weights-from", type=Path, default=None, help="as for bench.run")
    parser.add_argument("--out", type=Path, default=None, help="JSON rewritten after every layout")
    args = parser.parse_args()
    from bench.gpu_node import pin_to_cores

    files = ensure_images(args.state / "images", 2000)  # on every core: set-up, not measured
    folder = linked_copies(files, args.state / f"images-x{args.images}", args.images)
    few = linked_copies(files, args.state / f"images-x{args.startup_images}", args.startup_images) \
        if args.startup_images else None
    models = {model: bench_model(args.state, model, args.device, args.weights_from) for model in args.models}
    cores = pin_to_cores(args.cores) if args.cores else None
    report = {"images": args.images, "startup_images": args.startup_images, "decoder": args.decoder,
              "cores": cores, "command": "python -m bench.gpu_sweep " + " ".join(sys.argv[1:]), "layouts": []}
    for model, model_dir in models.items():
        for workers, threads, mini_batch in args.layouts:
            settings = {"device": args.device, "decoder": args.decoder, "max_concurrency_per_instance": workers,
                        "decode_threads": threads, **({"mini_batch_size": mini_batch} if mini_batch else {})}
            rate, rss, counts = run_pipeline(folder, model_dir, settings)
            measured = {"model": model, "workers": workers, "decode_threads": threads, "mini_batch_size": mini_batch,
                        "img_s": round(rate, 1), "seconds": counts["seconds"], "workers_ready_s": counts["workers_ready_s"],
                        "peak_rss_mb": round(rss)}
            if few is not None:
                _rate, _rss, few_counts = run_pipeline(few, model_dir, settings)
                steady, startup = steady_state(args.images, counts["seconds"], args.startup_images,
                                               few_counts["seconds"])
                measured.update(steady_img_s=steady and round(steady, 1), startup_s=startup and round(startup, 2))
            report["layouts"].append(measured)
            print(json.dumps(measured), flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

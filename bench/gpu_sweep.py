"""Which worker layout feeds a GPU best: `python -m bench.gpu_sweep` on a CUDA host.

Runs the CLI end to end on the bench images with ResNet-50 in fp16, for several
(workers per node, decode threads per worker, mini-batch size) layouts, and prints
img/s for each: the evidence behind the GPU figures of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.dataset import ensure_images, linked_copies
from bench.run import STATE, bench_model, run_pipeline

LAYOUTS = [(2, -1, 32), (4, 3, 64), (8, 1, 64), (8, 0, 64), (16, 0, 64), (12, 0, 128)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="?", type=int, default=4000, help="images per layout (default 4000)")
    images = parser.parse_args().images
    files = ensure_images(STATE / "images", 2000)
    folder = linked_copies(files, STATE / f"images-x{images}", images)
    model = bench_model(STATE, "resnet50", "cuda")
    results = []
    for workers, threads, mini_batch in LAYOUTS:
        settings = {"device": "cuda", "precision": "fp16", "channels_last": "on",
                    "max_concurrency_per_instance": workers, "decode_threads": threads,
                    "mini_batch_size": mini_batch}
        rate, rss, counts = run_pipeline(folder, model, settings)
        results.append({"workers": workers, "decode_threads": threads, "mini_batch_size": mini_batch,
                        "img_s": round(rate, 1), "seconds": counts["seconds"], "peak_rss_mb": round(rss)})
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"images": images, "layouts": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What GPU JPEG decoding would buy: nvJPEG (torchvision.io.decode_jpeg on CUDA) plus resize and crop on the GPU.

`python -m bench.gpu_decode --images N` on a CUDA host decodes the bench images in batches on the
GPU and prints img/s, to set beside `decode_img_s` (the engine's CPU decode on every core).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.dataset import ensure_images
from bench.run import IMAGENET, STATE


def gpu_decode_img_s(files: list[Path], batch: int = 64, device: str = "cuda") -> float:
    """decode_jpeg + resize + crop on `device` alone (CPU: a dry run of the same code)."""
    import torch
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    resize = v2.Compose([v2.Resize(IMAGENET["resize"], antialias=True), v2.CenterCrop(IMAGENET["input_size"])])
    data = [read_file(str(path)) for path in files]  # file reading stays on the CPU either way

    def run() -> None:
        for start in range(0, len(data), batch):
            images = decode_jpeg(data[start:start + batch], device=device)
            torch.stack([resize(image) for image in images])
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up: nvJPEG handles, kernels
    started = time.perf_counter()
    run()
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    files = ensure_images(STATE / "images", args.images)
    print(json.dumps({"gpu_decode_img_s": round(gpu_decode_img_s(files), 1), "images": len(files)}))


if __name__ == "__main__":
    main()

"""What GPU JPEG decoding would buy: nvJPEG (torchvision.io.decode_jpeg on CUDA) plus resize and crop on the GPU.

`python -m bench.gpu_decode --images N` on a CUDA host decodes the bench images in batches on the
GPU and prints img/s, to set beside `decode_img_s` (the engine's CPU decode on every core), and the host CPU
it took per image: nvJPEG decodes some files partly on the CPU (Huffman decoding, on GPUs without a hardware
JPEG engine or for files that engine does not take), which a node with few cores feels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import NamedTuple

from bench.dataset import ensure_images
from bench.run import IMAGENET, STATE


class GpuDecode(NamedTuple):
    img_s: float
    # This process's CPU time (all threads) per image: an upper bound of what nvJPEG takes from the host, as it
    # includes the host's wait for the GPU, which CUDA may spend spinning.
    host_cpu_ms_per_image: float


def gpu_decode_rate(files: list[Path], batch: int = 64, device: str = "cuda") -> GpuDecode:
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
    started, host_started = time.perf_counter(), time.process_time()
    run()
    wall, host = time.perf_counter() - started, time.process_time() - host_started
    return GpuDecode(len(files) / wall, 1000 * host / len(files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    files = ensure_images(STATE / "images", args.images)
    measured = gpu_decode_rate(files)
    print(json.dumps({"gpu_decode_img_s": round(measured.img_s, 1), "images": len(files),
                      "host_cpu_ms_per_image": round(measured.host_cpu_ms_per_image, 3)}))


if __name__ == "__main__":
    main()

"""Memory one decode takes at the pixel limit: what `scoring.job_settings.DECODE_BYTES_PER_PIXEL` budgets.

Each case runs in a fresh process (peak RSS is a high-water mark): an 8000 x 8000
RGBA PNG and a 16-bit grey PNG (64 megapixels, the default `max_pixels`), decoded
and cropped as a worker does; prints the peak RSS growth in bytes per pixel.

    python -m bench.decode_memory
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SIDE = 8000
CASES = ("RGBA", "I;16")


def _make(path: Path, mode: str) -> None:
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0)
    if mode == "RGBA":
        Image.fromarray(noise.integers(0, 255, (SIDE, SIDE, 4), dtype=np.uint8), "RGBA").save(path, compress_level=1)
    else:
        Image.fromarray(noise.integers(0, 65535, (SIDE, SIDE), dtype=np.uint16)).save(path, compress_level=1)


def _one(path: str) -> float:
    """Peak RSS growth of decoding and cropping `path`, in bytes per pixel (run in its own process)."""
    from scoring.image_decode import Preprocessor, decode_image
    from scoring.model_metadata import Preprocessing

    preprocess = Preprocessor(Preprocessing())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    preprocess.crop(decode_image(path, min_side=256))
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / SIDE**2


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(_one(sys.argv[2]))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as scratch:
        for mode in CASES:
            path = Path(scratch) / f"{mode.replace(';', '')}.png"
            _make(path, mode)
            measured = subprocess.run([sys.executable, "-m", "bench.decode_memory", "--one", str(path)],
                                      cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
            results[f"{mode}_bytes_per_pixel"] = round(float(measured.stdout.strip()), 1)
    print(json.dumps({"megapixels": SIDE**2 / 1e6, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's images: ImageNet-like JPEGs, 300-1,000 px a side, with photo-like detail.

Made once and kept under `.state/bench/`; a larger set re-uses the same files
through hard links, which is all the memory measurement needs.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(rng: np.random.Generator) -> Image.Image:
    """Smooth regions plus fine grain: decodes about as slowly as a camera JPEG of the same size."""
    width, height = int(rng.integers(300, 1001)), int(rng.integers(300, 1001))
    coarse = rng.integers(0, 256, size=(max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    grain = rng.normal(0, 10, size=(height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))


def _make(job: tuple[Path, int, int]) -> None:
    path, seed, index = job
    rng = np.random.default_rng([seed, index])  # per image: the set is the same whatever was cached
    partial = path.with_name(path.name + ".partial")
    photo_like(rng).save(partial, format="JPEG", quality=int(rng.integers(80, 96)))
    os.replace(partial, path)


def ensure_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` images, made once (on every core) and kept."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{index:06d}.jpg" for index in range(count)]
    missing = [(path, seed, index) for index, path in enumerate(paths) if not path.exists()]
    if missing:
        with ProcessPoolExecutor() as pool:
            list(pool.map(_make, missing, chunksize=16))
    return paths


def _progressive(job: tuple[Path, Path]) -> None:
    source, target = job
    partial = target.with_name(target.name + ".partial")
    with Image.open(source) as image:
        image.save(partial, format="JPEG", quality=90, progressive=True)
    os.replace(partial, target)


def progressive_copies(sources: list[Path], folder: Path) -> list[Path]:
    """The `sources` re-encoded as progressive JPEGs (made once, on every core): files a GPU's hardware JPEG
    engine does not take, so they go nvJPEG's per-image path with its Huffman decoding on the CPU."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / source.name for source in sources]
    missing = [(source, target) for source, target in zip(sources, targets) if not target.exists()]
    if missing:
        with ProcessPoolExecutor() as pool:
            list(pool.map(_progressive, missing, chunksize=16))
    return targets


def linked_copies(sources: list[Path], folder: Path, count: int) -> Path:
    """`count` names for the `sources` files (hard links), in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        target = folder / f"img_{index:06d}.jpg"
        if not target.exists():
            os.link(sources[index % len(sources)], target)
    return folder

"""Generate a realistic sample month: shapes of several classes, varied sizes and formats, a few broken files.

Layout: `<root>/<YYYYMM>/<true_label>/<file>`, so accuracy can be read off the
paths. The same `draw_image` feeds the model's training set (another seed), so
the project needs no download of any kind.
"""

from __future__ import annotations

import argparse
import io
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

LABELS = ("circle", "square", "triangle", "cross")

# Deliberately broken inputs: (relative path, what is wrong with it).
BROKEN_FILES = (
    ("circle/empty.jpg", "zero bytes"),
    ("square/truncated.jpg", "JPEG cut in half"),
    ("triangle/garbage.png", "random bytes named .png"),
    ("cross/not-really-a-photo.jpg", "text named .jpg"),
    ("notes.txt", "a text file in the month folder"),
)


def draw_image(label: str, rng: random.Random) -> Image.Image:
    """One picture of `label`: a noisy background and one coloured shape near the centre."""
    width, height = rng.randint(96, 480), rng.randint(96, 480)
    background = tuple(rng.randint(0, 255) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 6)):  # clutter: thin lines that are none of the classes
        points = [(rng.randint(0, width), rng.randint(0, height)) for _ in range(2)]
        draw.line(points, fill=tuple(rng.randint(0, 255) for _ in range(3)), width=1)
    side = min(width, height)
    radius = side * rng.uniform(0.22, 0.38)
    cx = width / 2 + rng.uniform(-0.1, 0.1) * side
    cy = height / 2 + rng.uniform(-0.1, 0.1) * side
    color = _contrasting(background, rng)
    angle = rng.uniform(0, 2 * math.pi)
    if label == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif label == "square":
        draw.polygon(_regular_polygon(cx, cy, radius, 4, angle), fill=color)
    elif label == "triangle":
        draw.polygon(_regular_polygon(cx, cy, radius, 3, angle), fill=color)
    elif label == "cross":
        bar = radius * 0.35
        for rotation in (angle, angle + math.pi / 2):
            dx, dy = math.cos(rotation), math.sin(rotation)
            px, py = -dy * bar, dx * bar
            draw.polygon([
                (cx - dx * radius + px, cy - dy * radius + py), (cx + dx * radius + px, cy + dy * radius + py),
                (cx + dx * radius - px, cy + dy * radius - py), (cx - dx * radius - px, cy - dy * radius - py),
            ], fill=color)
    else:
        raise ValueError(f"unknown label {label!r}; known: {', '.join(LABELS)}")
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return image


def _regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / sides), cy + radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _contrasting(background: tuple[int, ...], rng: random.Random) -> tuple[int, int, int]:
    while True:
        color = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(a - b) for a, b in zip(color, background)) > 180:
            return color


def write_month(root: Path, month: str, *, per_label: int = 75, seed: int = 0) -> list[Path]:
    """Write the month folder under `root`; returns every file written, broken ones included."""
    rng = random.Random(f"{seed}-{month}")
    folder = root / month
    written = []
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_label):
            image = draw_image(label, rng)
            if rng.random() < 0.7:
                path = folder / label / f"{label}_{index:04d}.jpg"
                image.save(path, format="JPEG", quality=rng.randint(70, 95))
            else:
                path = folder / label / f"{label}_{index:04d}.png"
                image.save(path, format="PNG")
            written.append(path)
    written.extend(_write_broken(folder, rng))
    return written


def _write_broken(folder: Path, rng: random.Random) -> list[Path]:
    paths = [folder / relative for relative, _why in BROKEN_FILES]
    empty, truncated, garbage, text, notes = paths
    empty.write_bytes(b"")
    buffer = io.BytesIO()
    draw_image("square", rng).save(buffer, format="JPEG", quality=90)
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(2048)))
    text.write_text("this is not a photo\n", encoding="utf-8")
    notes.write_text("Camera roll export, see the ticket for details.\n", encoding="utf-8")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--month", required=True)
    parser.add_argument("--per-label", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = write_month(args.root, args.month, per_label=args.per_label, seed=args.seed)
    print(f"wrote {len(files)} files under {args.root / args.month}")


if __name__ == "__main__":
    main()

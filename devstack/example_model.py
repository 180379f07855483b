"""A stand-in for a model of your own, saved the way the original hand-run job expected: `torch.save(model)`.

    .venv/bin/python -m devstack.example_model --out example-model

writes `example-model/model.pt` (a whole pickled `nn.Module` whose class, `TinyNet`, lives in this file, not
in torchvision) and `example-model/labels.txt`, so that README "Use your own model" runs as written on a
fresh clone. Its weights are random: it shows the route, not a useful model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

LABELS = ("circle", "square", "triangle", "cross")


class TinyNet(nn.Module):
    """A small CNN with one residual block."""

    def __init__(self, classes: int = len(LABELS), width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean(dim=(2, 3)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for model.pt and labels.txt")
    args = parser.parse_args()
    # The class by its importable name (run as `-m`, this module is `__main__`, which a pickle cannot find later).
    from devstack.example_model import TinyNet as Importable

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(Importable().eval(), args.out / "model.pt")
    (args.out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'model.pt'} (a pickled TinyNet from devstack/example_model.py) and "
          f"{args.out / 'labels.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

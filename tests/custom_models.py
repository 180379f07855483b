"""A model of the user's own, not in torchvision: a small CNN with a residual block, and its saved forms.

What a data engineer brings: the class lives in their code (here, this module), and the model was saved the
way the original hand-run job expected, `torch.save(model)`, or as TorchScript, or exported with torch.export.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LABELS = ("cat", "dog", "bird")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResidualNet(nn.Module):
    def __init__(self, classes: int = len(LABELS), width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.block = ResidualBlock(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.block(torch.relu(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


def trained_like(seed: int = 0, classes: int = len(LABELS)) -> ResidualNet:
    """Random but fixed weights, batch-norm statistics that are not the identity, eval mode."""
    torch.manual_seed(seed)
    model = ResidualNet(classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def save_program(model: nn.Module, path: Path, *, side: int = 32, dynamic_batch: bool = True) -> Path:
    example = torch.randn(2, 3, side, side)
    shapes = ({0: torch.export.Dim.DYNAMIC},) if dynamic_batch else None
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=shapes), path)
    return path


def save_torchscript(model: nn.Module, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        torch.jit.save(torch.jit.script(model), path)
    return path


def save_pickled(model: nn.Module, path: Path) -> Path:
    torch.save(model, path)  # the original job's format: the whole object, its class by reference
    return path

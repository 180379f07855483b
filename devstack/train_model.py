"""Train the demo classifier on generated shapes and register it in the local model registry.

A torchvision ResNet-18 at 64 px learns the four shapes in well under two
minutes on two CPU cores. The result is a model folder (docs/contracts.md): a plain
state dict plus metadata, at `<registry>/<name>/<version>/`.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from devstack.sample_month import LABELS, draw_image, write_month
from scoring.image_decode import Preprocessor
from scoring.model import METADATA_FILE, ModelMetadata, Preprocessing, build_model, save_model_folder
from scoring.precision_check import record_agreement

log = logging.getLogger(__name__)

# The demo model, as `make demo` registers it in the local workspace (the bench reuses it; neither needs the
# Azure or Airflow stack to find it, which a GPU host has not).
MODEL_NAME, MODEL_VERSION = "shapes-classifier", "1"
DEMO_REGISTRY = Path(__file__).resolve().parent.parent / ".state" / "localml" / "models"
ARCHITECTURE = "resnet18"
PREPROCESSING = Preprocessing(input_size=64, resize=64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def training_tensors(per_label: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(f"train-{seed}")
    preprocess = Preprocessor(PREPROCESSING)
    images, targets = [], []
    for index, label in enumerate(LABELS):
        for _ in range(per_label):
            images.append(preprocess(draw_image(label, rng)))
            targets.append(index)
    return torch.stack(images), torch.tensor(targets)


def train(*, per_label: int = 400, epochs: int = 6, seed: int = 0, batch_size: int = 64) -> torch.nn.Module:
    torch.manual_seed(seed)
    started = time.monotonic()
    inputs, targets = training_tensors(per_label, seed)
    log.info("generated %d training images in %.1fs", len(inputs), time.monotonic() - started)
    model = build_model(ARCHITECTURE, len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(inputs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs))
        correct = total_loss = 0.0
        for start in range(0, len(inputs), batch_size):
            index = order[start:start + batch_size]
            batch, target = inputs[index], targets[index]
            flips = torch.rand(len(batch)) < 0.5  # cheap augmentation: mirror half the batch
            batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)
            logits = model(batch)
            loss = loss_fn(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == target).sum().item()
        log.info("epoch %d/%d: loss %.3f, train accuracy %.3f, %.0fs elapsed", epoch + 1, epochs,
                 total_loss / len(inputs), correct / len(inputs), time.monotonic() - started)
    return model.eval()


def ensure_registered(registry: Path, name: str, version: str, **train_options) -> Path:
    """Train and register the model unless that version is already in the registry."""
    folder = registry / name / version
    if (folder / METADATA_FILE).is_file():
        log.info("model %s version %s already registered at %s", name, version, folder)
        return folder
    model = train(**train_options)
    metadata = ModelMetadata(name=name, version=version, architecture=ARCHITECTURE, labels=LABELS,
                             preprocessing=PREPROCESSING)
    staging = folder.with_name(f".{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    save_model_folder(staging, model, metadata)
    record_demo_month_agreement(staging)
    staging.rename(folder)  # registered whole, agreement record included, or not at all
    log.info("registered model %s version %s at %s", name, version, folder)
    return folder


def record_demo_month_agreement(model_dir: Path, month: str = "202610", device: str = "cpu") -> dict[str, float]:
    """The precision check every model version gets before registration, here on the demo month."""
    with tempfile.TemporaryDirectory(prefix="precision-check-") as scratch:
        write_month(Path(scratch), month)
        files = sorted(str(path) for path in (Path(scratch) / month).rglob("*") if path.is_file())
        record = record_agreement(model_dir, files, device=device)
    log.info("top-1 agreement with fp32 on the demo month: %s", record)
    return record


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--name", default="shapes-classifier")
    parser.add_argument("--version", default="1")
    parser.add_argument("--per-label", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    ensure_registered(args.registry, args.name, args.version, per_label=args.per_label, epochs=args.epochs)


if __name__ == "__main__":
    main()

"""`make bench`: how fast the scoring engine is against the hardware's bound, and how its memory grows.

Prints one JSON object as the last line (also saved to bench/results.json):
naive_img_s (PIL open, per-image tensor, batch of 1, fp32: the loop users run today),
pipeline_img_s (this engine end to end, files -> CSV, best settings for the device, Pillow decoding),
pipeline_batched_decode_img_s (the same with `--decoder torchvision`: JPEGs decoded in batches by
decode_jpeg on the device, nvJPEG on CUDA) and batched_decode_top1_agreement (the share of images
whose top-1 label is the same both ways), gpu_decode_img_s (CUDA only: decode + resize on the GPU alone),
pipeline_pt2_img_s (the same, the same weights exported by `import-model` to a `.pt2`
program; target >= 0.95 x pipeline_img_s),
dag_job_img_s (the same images as a month in Azurite, scored by the local backend
through the job the submit operator builds with the DAG's default form values),
cli_defaults_img_s (the CLI with no tuning flag: the same defaults, a local folder),
decode_img_s and forward_img_s (each alone, all cores), ceiling_img_s (CPU:
1/(1/decode + 1/forward), the two share the cores; GPU: min of the two, they overlap),
peak RSS of whole job process trees for the small and the large set, and the seconds until their
workers were all up (`workers_ready_s`, the job's own progress data), the job's main
process alone at 10,000 and 1,000,000 zero-byte inputs (`bench.flat_memory`), the profile
`auto` chose and its top-1 agreement with fp32 on the demo sample month.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.dataset import ensure_images, linked_copies
from scoring.cli import WORK_DIR
from scoring.progress import PROGRESS_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE = PROJECT_ROOT / ".state" / "bench"
RESULTS = Path(__file__).resolve().parent / "results.json"
IMAGENET = dict(resize=256, input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _cpus() -> int:
    """The cores this run may use (`taskset -c 0-3` stands a 16-core host in for a 4-vCPU node)."""
    from scoring.device_profile import usable_cores

    return usable_cores()


def _size(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def bench_model(state: Path, architecture: str, device: str, weights_from: Path | None = None) -> Path:
    """The benchmark's model folder, with its precision check recorded on the demo month.

    ResNet-18 is the demo classifier's trained weights (or `weights_from`'s) at ImageNet's 224 px
    preprocessing: the speed of ResNet-18 and a real answer to the precision check. Other architectures
    have random weights (speed does not depend on them; their check then says how random logits behave).
    """
    import torch

    from devstack.train_model import DEMO_REGISTRY, MODEL_NAME, MODEL_VERSION, ensure_registered, record_demo_month_agreement
    from scoring.model import METADATA_FILE, ModelMetadata, Preprocessing, build_model, read_metadata, save_model_folder

    folder = state / f"model-{architecture}-{device}"
    if not (folder / METADATA_FILE).is_file():
        if architecture == "resnet18":
            demo = weights_from or ensure_registered(DEMO_REGISTRY, MODEL_NAME, MODEL_VERSION)
            labels = read_metadata(demo).labels
            model = build_model(architecture, len(labels))
            model.load_state_dict(torch.load(demo / "weights.pt", map_location="cpu", weights_only=True))
        else:
            torch.manual_seed(0)
            labels = tuple(f"class_{i}" for i in range(1000))
            model = build_model(architecture, len(labels))
        metadata = ModelMetadata(name=f"bench-{architecture}", version="1", architecture=architecture,
                                 labels=labels, preprocessing=Preprocessing(**IMAGENET))
        staging = folder.with_name(folder.name + ".partial")
        save_model_folder(staging, model, metadata)
        record_demo_month_agreement(staging, device=device)
        staging.rename(folder)
    return folder


def bench_program(state: Path, model_dir: Path, device: str) -> Path:
    """The bench model exported to a `.pt2` folder as `import-model` does, with its own precision check."""
    from devstack.train_model import record_demo_month_agreement
    from scoring.model import load_model
    from scoring.model_import import import_model
    from scoring.model_metadata import METADATA_FILE

    folder = state / f"{model_dir.name}-pt2"
    if not (folder / METADATA_FILE).is_file():
        loaded = load_model(model_dir)
        staging = folder.with_name(folder.name + ".partial")
        import_model(loaded.module, loaded.metadata, staging)
        record_demo_month_agreement(staging, device=device)
        staging.rename(folder)
    return folder


def best_settings(device: str, precision: str) -> dict:
    """The engine's best hand-picked flags on this device (chosen from bench runs, see docs/performance.md)."""
    cpus = _cpus()
    if device == "cuda":
        return {"device": "cuda", "max_concurrency_per_instance": 1, "decode_threads": cpus, "batch_size": 128,
                "mini_batch_size": 512, "precision": precision, "channels_last": "on"}
    # CPU: one worker per core, decoding inline; each worker is one thread of decode then forward.
    return {"device": "cpu", "max_concurrency_per_instance": cpus, "decode_threads": 0, "batch_size": 32,
            "mini_batch_size": 64, "precision": precision, "channels_last": "on"}


def naive_img_s(files: list[Path], model_dir: Path, device: str) -> float:
    """The seed's loop: PIL open, torchvision transforms per image, one fp32 forward of a batch of 1."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from scoring.model import load_model

    loaded = load_model(model_dir, device)
    model, pre = loaded.module, loaded.metadata.preprocessing
    transform = transforms.Compose([
        transforms.Resize(pre.short_side), transforms.CenterCrop(pre.side), transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    started = time.perf_counter()
    with torch.no_grad():
        for path in files:
            tensor = transform(Image.open(path).convert("RGB")).unsqueeze(0).to(device)
            model(tensor).argmax(1).item()
    return len(files) / (time.perf_counter() - started)


_PREPROCESSOR = None


def _decode_one(job: tuple[str, str]) -> int:
    """One image through the engine's decode and preprocessing (a pool worker keeps its Preprocessor)."""
    global _PREPROCESSOR
    from scoring.image_decode import Preprocessor, decode_image
    from scoring.model import read_metadata

    path, model_dir = job
    if _PREPROCESSOR is None:
        preprocessing = read_metadata(Path(model_dir)).preprocessing
        _PREPROCESSOR = (Preprocessor(preprocessing), preprocessing.short_side)
    preprocessor, resize = _PREPROCESSOR
    crop = preprocessor.crop(decode_image(path, min_side=resize))
    return int(preprocessor.normalize(crop.unsqueeze(0)).shape[0])


def decode_img_s(files: list[Path], model_dir: Path) -> float:
    """Decode + preprocess only, with the engine's own functions, one process per core."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(_cpus(), initializer=_single_thread) as pool:
        pool.map(_decode_one, [(str(files[0]), str(model_dir))] * _cpus())  # imports done
        started = time.perf_counter()
        pool.map(_decode_one, [(str(path), str(model_dir)) for path in files], chunksize=8)
        return len(files) / (time.perf_counter() - started)


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _forward_worker(model_dir: str, device: str, precision: str, batch_size: int, batches: int, threads: int,
                    barrier, results) -> None:
    import torch

    from scoring.predict import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor(Path(model_dir), device, precision=precision, channels_last=True)
    crop = predictor.metadata.preprocessing.side
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch_size, 3, crop, crop, generator=generator) for _ in range(4)]
    predictor.probabilities(inputs[0])  # warm-up: kernels chosen, caches filled
    if device == "cuda":
        torch.cuda.synchronize()
    barrier.wait()
    started = time.perf_counter()
    for index in range(batches):
        predictor.top1(inputs[index % len(inputs)])  # .tolist() inside waits for the device
    results.put(batches * batch_size / (time.perf_counter() - started))


def forward_img_s(model_dir: Path, device: str, precision: str, batch_size: int, images: int) -> float:
    """Forward only on ready tensors, all cores: the better of one process with every thread, or one per core."""
    context = multiprocessing.get_context("spawn")
    cpus = _cpus()
    layouts = [(1, cpus)] if device == "cuda" else [(1, cpus), (cpus, 1)]
    best = 0.0
    for processes, threads in layouts:
        barrier, results = context.Barrier(processes), context.Queue()
        batches = max(2, images // batch_size // processes)
        workers = [context.Process(target=_forward_worker, args=(str(model_dir), device, precision, batch_size,
                                                                 batches, threads, barrier, results))
                   for _ in range(processes)]
        for worker in workers:
            worker.start()
        rates = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        best = max(best, sum(rates))
    return best


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_pipeline(input_dir: Path, model_dir: Path, settings: dict) -> tuple[float, float, dict]:
    """The CLI end to end on `input_dir`; returns (img/s, peak RSS MB of the whole process tree, counts with the
    top-1 label of every image under "labels" and the job's own `workers_ready_s`, from its progress data)."""
    with tempfile.TemporaryDirectory(prefix="bench-out-") as out:
        command = [sys.executable, "-m", "scoring", "score", "--input", str(input_dir), "--model", str(model_dir),
                   "--out", out, "--month", "209901", "--logging_level", "WARNING"]
        for name, value in settings.items():  # none: the defaults, as a job gets them from an untouched form
            command += [f"--{name}", str(value)]
        peak = 0
        started = time.perf_counter()
        process = psutil.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        output = []
        reader = threading.Thread(target=lambda: output.extend(process.stdout.read().decode().splitlines()))
        reader.start()
        while process.poll() is None:
            peak = max(peak, _tree_rss(process))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        reader.join()
        if process.returncode != 0:
            raise RuntimeError("pipeline run failed:\n" + "\n".join(output[-20:]))
        images = sum(len(names) for _folder, _subfolders, names in os.walk(input_dir))  # month folders nest
        with open(Path(out) / "predictions.csv", newline="", encoding="utf-8") as handle:
            labels = {row["image"]: row["label"] for row in csv.DictReader(handle)}
        progress = json.loads((Path(out) / WORK_DIR / PROGRESS_FILE).read_text(encoding="utf-8"))
    return images / elapsed, peak / 2**20, {"images": images, "scored": len(labels), "seconds": round(elapsed, 2),
                                            "workers_ready_s": progress["workers_ready_s"], "labels": labels}


def top1_agreement(first: dict, second: dict) -> float:
    """The share of images with the same top-1 label in both runs."""
    return sum(first.get(image) == label for image, label in second.items()) / max(1, len(second))


def _shown(counts: dict) -> dict:
    return {key: value for key, value in counts.items() if key != "labels"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000,
                        help="size of the benchmark set; 2,000 by default so that the ~2 s of worker start-up is not most of the run")
    parser.add_argument("--large", type=int, default=10000, help="size of the set whose peak RSS is compared")
    parser.add_argument("--rss-images", type=int, default=1000, help="the smaller set of the memory comparison")
    parser.add_argument("--flat-small", type=int, default=10_000, help="inputs of the main-process memory baseline")
    parser.add_argument("--flat-large", type=int, default=1_000_000, help="inputs compared with that baseline")
    parser.add_argument("--state", type=Path, default=STATE, help="where generated images and models are kept")
    parser.add_argument("--naive-images", type=int, default=200, help="images timed for the naive loop")
    parser.add_argument("--validation-rows", type=int, default=1_000_000,
                        help="rows of the month whose publish checks (validation, summary) are timed")
    parser.add_argument("--model", default="resnet18", help="torchvision architecture (resnet50 on a GPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--weights-from", type=Path, default=None,
                        help="a ResNet-18 model folder whose weights the bench model takes (default: the demo model)")
    parser.add_argument("--settings", choices=("best", "defaults"), default="best",
                        help="pipeline flags: best (hand-picked for the device) or defaults (what a job gets on this "
                             "node from the VM-size rule: a worker per core, decoding inline, batch auto)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from scoring.job_settings import JobSettings
    from scoring.model import read_metadata
    from scoring.device_profile import probe, resolve

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    state = args.state
    files = ensure_images(state / "images", args.images)
    large = linked_copies(files, state / f"images-x{args.large}", args.large)
    small = linked_copies(files, state / f"images-x{args.images}", args.images)  # the same files, as a set
    model_dir = bench_model(state, args.model, device, args.weights_from)

    # What `auto` picks here for a job with the DAG's defaults; the hand-picked pipeline uses the same precision.
    agreement = read_metadata(model_dir).precision_agreement
    profile = resolve(JobSettings(), probe(), agreement)
    precision = profile.precision
    settings = best_settings(device, precision) if args.settings == "best" else {"device": device}
    print(f"device {device}, model {args.model}, auto profile: {profile.describe()}; pipeline flags {settings}",
          flush=True)

    naive = naive_img_s(files[: args.naive_images], model_dir, device)
    print(f"naive: {naive:.1f} img/s", flush=True)
    decode = decode_img_s(files, model_dir)
    print(f"decode: {decode:.1f} img/s ({1000 * _cpus() / decode:.2f} ms of one core per image)",
          flush=True)
    # The forward ceiling at the best batch for the device, whichever flags the pipeline runs with.
    forward = forward_img_s(model_dir, device, precision, best_settings(device, precision)["batch_size"], args.images)
    print(f"forward: {forward:.1f} img/s", flush=True)
    ceiling = min(decode, forward) if device == "cuda" else 1.0 / (1.0 / decode + 1.0 / forward)
    pipeline, _rss, counts = run_pipeline(small, model_dir, {**settings, "decoder": "pillow"})
    print(f"pipeline {args.images}: {pipeline:.1f} img/s {_shown(counts)}", flush=True)
    batched, _rss, batched_counts = run_pipeline(small, model_dir, {**settings, "decoder": "torchvision"})
    batched_agreement = top1_agreement(counts["labels"], batched_counts["labels"])
    print(f"pipeline {args.images}, JPEGs by decode_jpeg on {device}: {batched:.1f} img/s {_shown(batched_counts)}, "
          f"top-1 agreement with Pillow decoding {batched_agreement:.2%}", flush=True)
    gpu_decode = None
    if device == "cuda":
        from bench.gpu_decode import gpu_decode_rate

        gpu_decode = gpu_decode_rate(files).img_s
        print(f"decode + resize on the GPU alone: {gpu_decode:.1f} img/s", flush=True)
    program_dir = bench_program(state, model_dir, device)
    pipeline_pt2, _rss, pt2_counts = run_pipeline(small, program_dir, settings)
    print(f"pipeline {args.images}, .pt2 program: {pipeline_pt2:.1f} img/s {_shown(pt2_counts)}", flush=True)
    cli_defaults, _rss, cli_counts = run_pipeline(small, model_dir, {})
    print(f"CLI with the job defaults {args.images}: {cli_defaults:.1f} img/s {_shown(cli_counts)}", flush=True)
    from bench.dag_job import dag_job_img_s, unavailable

    why_not = unavailable()
    if why_not is None:
        dag_job, dag_counts = dag_job_img_s(sorted(small.iterdir()), model_dir, state)
        print(f"DAG job {args.images}: {dag_job:.1f} img/s {dag_counts}", flush=True)
    else:
        dag_job, dag_counts = None, {"skipped": why_not}
        print(f"DAG job not measured on this host: {why_not}", flush=True)
    from bench.validation import measure as measure_validation

    validation = measure_validation(state, args.validation_rows)
    print(f"validate and summarize {validation['rows']} rows: {validation}", flush=True)
    rss_set = linked_copies(files, state / f"images-x{args.rss_images}", args.rss_images)
    pipeline_1k, rss_1k, counts_1k = run_pipeline(rss_set, model_dir, settings)
    print(f"pipeline {args.rss_images}: {pipeline_1k:.1f} img/s, peak RSS {rss_1k:.0f} MB {_shown(counts_1k)}", flush=True)
    pipeline_large, rss_large, large_counts = run_pipeline(large, model_dir, settings)
    print(f"pipeline {args.large}: {pipeline_large:.1f} img/s, peak RSS {rss_large:.0f} MB {_shown(large_counts)}", flush=True)

    from bench.flat_memory import measure as measure_flat_memory

    flat_memory = measure_flat_memory(state, model_dir, args.flat_small, args.flat_large)

    device_name = torch.cuda.get_device_name() if device == "cuda" else f"{_cpus()}-core CPU"
    result = {
        "naive_img_s": round(naive, 1),
        "pipeline_img_s": round(pipeline, 1),
        "decode_img_s": round(decode, 1),
        "forward_img_s": round(forward, 1),
        "ceiling_img_s": round(ceiling, 1),
        "pipeline_batched_decode_img_s": round(batched, 1),
        "batched_decode_over_pipeline": round(batched / pipeline, 3),
        "batched_decode_top1_agreement": round(batched_agreement, 4),
        "gpu_decode_img_s": round(gpu_decode, 1) if gpu_decode else None,
        "cpus": _cpus(),
        "pipeline_pt2_img_s": round(pipeline_pt2, 1),
        "pt2_over_pipeline": round(pipeline_pt2 / pipeline, 3),
        "pipeline_over_ceiling": round(pipeline / ceiling, 3),
        "pipeline_over_naive": round(pipeline / naive, 2),
        "dag_job_img_s": round(dag_job, 1) if dag_job else None,
        "dag_job_over_pipeline": round(dag_job / pipeline, 3) if dag_job else None,
        "dag_job": dag_counts,
        "cli_defaults_img_s": round(cli_defaults, 1),
        "decode_ms_per_image_one_core": round(1000 * _cpus() / decode, 2),
        f"pipeline_img_s_{_size(args.rss_images)}": round(pipeline_1k, 1),
        f"pipeline_img_s_{_size(args.large)}": round(pipeline_large, 1),
        f"workers_ready_s_{_size(args.rss_images)}": counts_1k["workers_ready_s"],
        f"workers_ready_s_{_size(args.large)}": large_counts["workers_ready_s"],
        f"peak_rss_mb_{_size(args.rss_images)}": round(rss_1k),
        f"peak_rss_mb_{_size(args.large)}": round(rss_large),
        "rss_growth": round(rss_large / rss_1k, 3),
        "main_process_memory": flat_memory,
        "publish_checks": validation,
        "device": device_name,
        "model": args.model,
        "profile": {"auto": profile.describe(), "device": profile.device, "precision": profile.precision,
                    "channels_last": profile.channels_last, "batch_size": profile.batch_size,
                    "decode_threads": profile.decode_threads,
                    "top1_agreement_vs_fp32": agreement.get(profile.precision, 1.0)},
        "precision": precision,
        "settings": {**settings, "choice": args.settings},
        "images": args.images,
        "large_images": args.large,
        "top1_agreement_vs_fp32": agreement,
        "command": "make bench",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU node's figures: a Standard_NC4as_T4_v3 node (one GPU, 4 vCPUs) stood for by 4 cores of a CUDA host.

`python -m bench.gpu_node --out F` (bench/gpu.sh runs it) makes the bench images and models on every
core, then pins itself and every process it starts to the first `--cores` cores, and measures:
- decode_img_s: the CPU decode wall, the engine's Pillow decode + preprocessing, one process per core;
- gpu_decode_img_s: decode_jpeg (nvJPEG) + resize + crop on the GPU alone, batches of 64, and
  gpu_decode_host_cpu_ms_per_image, the host CPU that took per file (bench.gpu_decode);
- cpu_side_ms_per_image: what the GPU path still costs one core per file (read, header check, copy into a
  tensor), so 1000 x cores / it bounds the GPU-decoding pipeline on the node;
- pixel_difference: mean and largest absolute difference (0-255) between the GPU path's and Pillow's
  crops of the same files (resize and IDCT differ slightly; recorded, not judged);
- per model, forward_img_s: the GPU forward ceiling on ready tensors (the precision auto picks, fp16,
  channels-last, batch 128, one process with every core's thread);
- per model, pipeline_img_s by decoder: the CLI end to end on `--images` files with the job's defaults for
  this node (a worker per core, decoding inline, batch fitted to the GPU) and `--decoder` pillow,
  torchvision and auto; top1_agreement: the share of files with the same top-1 label, GPU-decoded vs
  Pillow-decoded; for ResNet-18 (the demo weights) also shapes_top1_agreement, the same share on images of
  the kind it was trained for (`shapes_agreement`);
- auto_choice: what `decoder=auto` picks here, by the probe a worker runs at init() over the run's folder;
- software_path, the T4's way of decoding: A100, H100 and H200 decode baseline JPEGs in a hardware JPEG
  engine, which a T4 lacks; there nvJPEG decodes each file with its Huffman stage on the CPU, as it does here
  for progressive files. So, on progressive re-encodes of the bench images: gpu_decode_img_s and
  host_cpu_ms_per_image as above, the first model's pipeline with decoder torchvision, then pillow, on
  `--software-images` files (an upper bound of the T4's host cost: progressive Huffman decoding is more
  work than baseline's), and auto_choice over those files. Measured after the rest, so a run cut short
  keeps the main figures;
- target_img_s = min(2 x decode_img_s, 0.7 x forward_img_s); target_met when the GPU-decoding pipeline
  reaches it and, where auto picks GPU decoding, it is not slower than Pillow decoding; the software path's
  verdict holds its GPU-decoding pipeline to the first model's same target and to Pillow decoding of the
  same progressive files, and auto_never_slower says whether auto's pick there was the faster of the two.
The JSON is rewritten after every figure, so a run cut short keeps what it measured. `--device cpu` runs
the same steps on the CPU (decode_jpeg by libjpeg-turbo): the test that the script works before a GPU's time
is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from bench.dataset import ensure_images, linked_copies, progressive_copies
from scoring.job_settings import JobSettings
from bench.run import STATE, bench_model, decode_img_s, forward_img_s, run_pipeline, top1_agreement

DECODERS = ("pillow", "torchvision", "auto")
FORWARD_BATCH = 128
DIFFERENCE_SAMPLE = 200  # files compared pixel by pixel
SHAPES_PER_LABEL = 500  # 2,000 demo-like images, about 1,400 of them JPEGs
MAX_PIXELS = JobSettings().max_pixels  # the job's default limit, as the pipeline runs get it


def pin_to_cores(count: int) -> list[int]:
    """This process, and every one it starts from now on, on its first `count` cores."""
    cores = sorted(os.sched_getaffinity(0))[:count]
    if len(cores) < count:
        raise SystemExit(f"--cores {count}: this host offers only {len(cores)} cores")
    os.sched_setaffinity(0, cores)
    return cores


def pixel_difference(files: list[Path], model_dir: Path, device: str) -> dict:
    """The GPU path's crops against Pillow's, on the same files."""
    import torch

    from scoring.decoders import PillowDecoding
    from scoring.image_decode import Preprocessor
    from scoring.jpeg_decode import JpegBatchDecoder
    from scoring.model import read_metadata

    preprocessing = read_metadata(model_dir).preprocessing
    pillow = PillowDecoding(Preprocessor(preprocessing), max_pixels=MAX_PIXELS, min_side=preprocessing.short_side)
    batched = JpegBatchDecoder(pillow.preprocess, torch.device(device), max_pixels=pillow.max_pixels,
                               min_side=pillow.min_side, pillow=pillow.pixels)
    paths = [str(path) for path in files[:DIFFERENCE_SAMPLE]]
    means, largest = [], 0
    for path, decoded in zip(paths, batched.decode(paths)):
        difference = (decoded.cpu().int() - pillow.pixels(path).int()).abs()
        means.append(difference.float().mean().item())
        largest = max(largest, int(difference.max()))
    return {"files": len(paths), "mean_abs": round(sum(means) / len(means), 3), "max_abs": largest,
            "decoded_on_gpu": batched.batched}


def node_profile(model_dir: Path, device: str):
    """The scoring profile a job with the default settings gets on this node (what auto picks, and the workers)."""
    from scoring.device_profile import probe, resolve
    from scoring.job_settings import JobSettings
    from scoring.model import read_metadata

    return resolve(JobSettings(device=device), probe(), read_metadata(model_dir).precision_agreement)


def cpu_side_ms_per_image(files: list[Path], model_dir: Path) -> float:
    """One core's time per file for the part of the GPU path that stays on the CPU (files already cached)."""
    import torch

    from scoring.image_decode import Preprocessor
    from scoring.jpeg_decode import JpegBatchDecoder
    from scoring.model import read_metadata

    preprocessing = read_metadata(model_dir).preprocessing
    decoder = JpegBatchDecoder(Preprocessor(preprocessing), torch.device("cpu"), max_pixels=MAX_PIXELS,
                               min_side=preprocessing.short_side, pillow=lambda path: None)
    paths = [str(path) for path in files]
    for path in paths[:50]:
        decoder.jpeg_bytes(path)
    started = time.process_time()  # this thread's CPU, not the wall
    for path in paths:
        decoder.jpeg_bytes(path)
    return 1000 * (time.process_time() - started) / len(paths)


def auto_choice(model_dir: Path, device: str, folder: Path) -> dict:
    """What `decoder=auto` picks on this node for the month in `folder`, by the same probe as a worker's init()
    with the job's defaults."""
    import torch

    from scoring.decoders import PillowDecoding, choose, measure_rates
    from scoring.image_decode import Preprocessor
    from scoring.model import read_metadata

    metadata = read_metadata(model_dir)
    profile = node_profile(model_dir, device)
    pillow = PillowDecoding(Preprocessor(metadata.preprocessing), max_pixels=MAX_PIXELS,
                            min_side=metadata.preprocessing.short_side, threads=profile.decode_threads)
    # Measured on the CPU too (where auto needs no probe), so that a dry run shows what the probe decoded.
    rates = measure_rates(pillow, torch.device(device), threads=profile.decode_threads, workers=profile.workers,
                          input_root=str(folder))
    decoder, why = choose(profile.decoder, device, lambda: rates)
    return {"decoder": decoder, "why": why, "workers": profile.workers, "profile": profile.describe(reasons=False),
            "probe": {"pillow_img_s": round(rates.pillow, 1), "batched_img_s": round(rates.batched, 1),
                      "sample": rates.sample}}


def decoder_runs(folder: Path, model_dir: Path, device: str, decoders):
    """The CLI over `folder` once per decoder, one run at a time: (decoder, img/s, counts, each file's top-1)."""
    for decoder in decoders:
        rate, _rss, counts = run_pipeline(folder, model_dir, {"device": device, "decoder": decoder})
        labels = counts.pop("labels")
        yield decoder, round(rate, 1), counts, labels


def shapes_agreement(state: Path, model_dir: Path, device: str, per_label: int = SHAPES_PER_LABEL) -> dict:
    """Top-1 agreement, GPU-decoded vs Pillow-decoded, on images of what the demo model was trained for.

    The bench images are grain over colour patches: for the demo classifier (circles, squares, triangles,
    crosses) every label there is a near tie, which a pixel's rounding can flip. Its own kind of image (a month
    as the demo writes it: about 70 % JPEGs, the rest PNGs and broken files, which take Pillow's path either way)
    says whether GPU decoding changes an answer the model is sure of."""
    from devstack.sample_month import write_month

    month, folder = "209912", state / f"shapes-{per_label}"
    if not folder.is_dir():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        write_month(staging, month, per_label=per_label)
        staging.rename(folder)
    labels, measured = {}, {}
    for decoder, _rate, counts, labels[decoder] in decoder_runs(folder / month, model_dir, device,
                                                               ("pillow", "torchvision")):
        measured[decoder] = counts
    return {"top1_agreement": round(top1_agreement(labels["pillow"], labels["torchvision"]), 4),
            "jpegs": sum(name.endswith(".jpg") for name in labels["pillow"]), "runs": measured}


def _target_img_s(figures: dict, model: str) -> float:
    return min(2 * figures["decode_img_s"], 0.7 * figures["models"][model]["forward_img_s"])


def judge(figures: dict) -> dict:
    """The target for each model, and for the software path, from the figures defined above."""
    verdicts = {}
    for model, measured in figures["models"].items():
        pipelines = measured.get("pipeline_img_s", {})
        if not {"pillow", "torchvision"} <= set(pipelines) or "forward_img_s" not in measured:
            continue
        target = _target_img_s(figures, model)
        gpu_reaches = pipelines["torchvision"] >= target
        auto_gpu = figures.get("auto_choice", {}).get("decoder") == "torchvision"
        never_slower = not auto_gpu or pipelines["torchvision"] >= pipelines["pillow"]
        verdicts[model] = {"target_img_s": round(target, 1), "gpu_decoding_reaches_target": gpu_reaches,
                           "auto_never_slower": never_slower, "target_met": gpu_reaches and never_slower}
    software = figures.get("software_path", {})
    if {"pillow", "torchvision"} <= set(software.get("pipeline_img_s", {})) and software["model"] in verdicts:
        target = _target_img_s(figures, software["model"])
        rate = software["pipeline_img_s"]["torchvision"]
        reaches = rate >= target
        not_slower = rate >= software["pipeline_img_s"]["pillow"]
        auto_gpu = software.get("auto_choice", {}).get("decoder") == "torchvision"
        verdicts["software_path"] = {"model": software["model"], "target_img_s": round(target, 1),
                                     "gpu_decoding_reaches_target": reaches, "not_slower_than_pillow": not_slower,
                                     "auto_never_slower": not auto_gpu or not_slower,
                                     "target_met": reaches and not_slower}
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_node", description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=4, help="the node's vCPUs, stood for by this host's first cores")
    parser.add_argument("--images", type=int, default=20_000, help="files per pipeline run")
    parser.add_argument("--unique", type=int, default=2_000, help="distinct images among them (the rest are links)")
    parser.add_argument("--software-images", type=int, default=10_000,
                        help="files for the software path's pipeline run (progressive copies)")
    parser.add_argument("--shapes-per-label", type=int, default=SHAPES_PER_LABEL,
                        help="demo-like images per label for ResNet-18's second agreement figure")
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--state", type=Path, default=STATE)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run of every step")
    parser.add_argument("--weights-from", type=Path, default=None, help="as for bench.run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    import torchvision

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu_node needs a CUDA device (--device cpu for a dry run)")
    started = time.perf_counter()
    files = ensure_images(args.state / "images", args.unique)  # on every core: set-up, not measured
    folder = linked_copies(files, args.state / f"images-x{args.images}", args.images)
    progressive = progressive_copies(files, args.state / "images-progressive")
    progressive_folder = linked_copies(progressive, args.state / f"images-progressive-x{args.software_images}",
                                       args.software_images)
    model_dirs = {model: bench_model(args.state, model, device, args.weights_from) for model in args.models}
    cores = pin_to_cores(args.cores)
    figures: dict = {
        "host": f"{torch.cuda.get_device_name() if device == 'cuda' else 'no GPU'}, {os.cpu_count()} CPU cores "
                f"({platform.machine()}); torch {torch.__version__}, torchvision {torchvision.__version__}",
        "node": f"{args.cores} cores stand for a Standard_NC4as_T4_v3 node (taskset cores {cores})",
        "images": args.images, "unique_images": args.unique, "models": {},
        "device": device, "command": f"python -m bench.gpu_node --cores {args.cores} --images {args.images}",
    }

    def save(step: str, measured) -> None:
        figures["seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps({**figures, "verdict": judge(figures)}, indent=2) + "\n", encoding="utf-8")
        print(f"{step}: {json.dumps(measured)} ({figures['seconds']} s)", flush=True)

    first_model = model_dirs[args.models[0]]
    figures["decode_img_s"] = round(decode_img_s(files, first_model), 1)
    save("CPU decode wall, img/s", figures["decode_img_s"])
    from bench.gpu_decode import gpu_decode_rate

    gpu_decode = gpu_decode_rate(files, device=device)
    figures["gpu_decode_img_s"] = round(gpu_decode.img_s, 1)
    figures["gpu_decode_host_cpu_ms_per_image"] = round(gpu_decode.host_cpu_ms_per_image, 3)
    figures["cpu_side_ms_per_image"] = round(cpu_side_ms_per_image(files, first_model), 3)
    figures["pixel_difference"] = pixel_difference(files, first_model, device)
    figures["auto_choice"] = auto_choice(first_model, device, folder)
    save("decode + resize alone, its CPU side, pixel difference, auto", {key: figures[key] for key in (
        "gpu_decode_img_s", "gpu_decode_host_cpu_ms_per_image", "cpu_side_ms_per_image", "pixel_difference",
        "auto_choice")})
    for model, model_dir in model_dirs.items():
        measured = figures["models"].setdefault(model, {"pipeline_img_s": {}, "runs": {}})
        precision = node_profile(model_dir, device).precision
        measured["forward_precision"] = precision
        measured["forward_img_s"] = round(forward_img_s(model_dir, device, precision, FORWARD_BATCH, args.images), 1)
        save(f"{model} forward ceiling, img/s", measured["forward_img_s"])
        labels = {}
        for decoder, rate, counts, labels[decoder] in decoder_runs(folder, model_dir, device, DECODERS):
            measured["pipeline_img_s"][decoder], measured["runs"][decoder] = rate, counts
            save(f"{model} pipeline, decoder {decoder}", {"img_s": rate, **counts})
        measured["top1_agreement"] = round(top1_agreement(labels["pillow"], labels["torchvision"]), 4)
        save(f"{model} top-1 agreement, GPU vs Pillow decoding", measured["top1_agreement"])
        if model == "resnet18":  # the demo weights: a model that knows its images
            measured["shapes_top1_agreement"] = shapes_agreement(args.state, model_dir, device, args.shapes_per_label)
            save(f"{model} top-1 agreement on the demo's kind of image", measured["shapes_top1_agreement"])
    software = figures["software_path"] = {"files": "progressive re-encodes of the bench images",
                                           "model": args.models[0], "images": args.software_images}
    software_decode = gpu_decode_rate(progressive, device=device)
    software["gpu_decode_img_s"] = round(software_decode.img_s, 1)
    software["host_cpu_ms_per_image"] = round(software_decode.host_cpu_ms_per_image, 3)
    save("software path: decode + resize alone, its host CPU", software)
    software["pipeline_img_s"], software["runs"] = {}, {}
    # Pillow on the same progressive files: like against like.
    for decoder, rate, counts, _labels in decoder_runs(progressive_folder, first_model, device, ("torchvision", "pillow")):
        software["pipeline_img_s"][decoder], software["runs"][decoder] = rate, counts
        save(f"software path: {args.models[0]} pipeline, decoder {decoder}", {"img_s": rate, **counts})
    software["auto_choice"] = auto_choice(first_model, device, progressive_folder)
    save("software path: auto's pick", software["auto_choice"])
    print(json.dumps({**figures, "verdict": judge(figures)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

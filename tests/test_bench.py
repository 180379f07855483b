"""The benchmark runs and reports every figure (tiny sizes; its numbers are checked by `make bench`, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_bench_reports_every_figure(tmp_path, model_dir):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--images", "12", "--large", "24", "--rss-images", "12",
         "--naive-images", "4", "--validation-rows", "500", "--state", str(tmp_path / "state"), "--out", str(out),
         "--weights-from", str(model_dir)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last_line = json.loads(result.stdout.strip().splitlines()[-1])
    assert last_line == json.loads(out.read_text())
    for key in ("naive_img_s", "pipeline_img_s", "decode_img_s", "forward_img_s", "ceiling_img_s",
                "peak_rss_mb_12", "peak_rss_mb_24", "dag_job_img_s", "cli_defaults_img_s", "pipeline_pt2_img_s",
                "pt2_over_pipeline", "pipeline_batched_decode_img_s", "batched_decode_over_pipeline"):
        assert last_line[key] > 0, key
    # 12 and 24 files make one mini-batch: the second worker never reports, so the start-up stays unknown.
    assert last_line["workers_ready_s_12"] is None and last_line["workers_ready_s_24"] is None
    assert 0.9 <= last_line["batched_decode_top1_agreement"] <= 1
    assert last_line["cpus"] == len(os.sched_getaffinity(0)) and last_line["gpu_decode_img_s"] is None
    assert last_line["dag_job"]["inputs"] == last_line["dag_job"]["scored"] == 12
    assert 0 < last_line["dag_job"]["job_log_lines"] < 40 and last_line["dag_job"]["job_log_bytes_per_image"] > 0
    checks = last_line["publish_checks"]
    assert checks["rows"] == 500 and checks["seconds"] > 0 and checks["peak_allocated_mb"] > 0
    assert last_line["dag_job"]["settings"]["precision"] == "auto"  # the DAG's untouched form
    assert last_line["dag_job"]["profile"].startswith("scoring profile cpu, ")
    fetch = last_line["dag_job"]["fetch_alone"]
    assert fetch["blobs"] == 12 and fetch["client_cpu_s"] > 0 and fetch["azurite_cpu_s"] > 0
    assert set(last_line["top1_agreement_vs_fp32"]) == {"bf16", "fp16"}
    assert last_line["profile"]["precision"] in ("bf16", "fp32")
    assert 0 < last_line["profile"]["top1_agreement_vs_fp32"] <= 1
    assert last_line["ceiling_img_s"] <= min(last_line["decode_img_s"], last_line["forward_img_s"])
    assert last_line["device"] and last_line["model"] == "resnet18"
    assert last_line["precision"] in ("bf16", "fp32") and last_line["images"] == 12


def test_the_gpu_node_figures_run_as_a_dry_run_on_cpu(tmp_path, model_dir):
    """bench.gpu_node's every step on the CPU (the GPU host's time is too short to find a broken script there),
    pinned to one core as it pins a GPU host to the node's four."""
    out = tmp_path / "node.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_node", "--device", "cpu", "--cores", "1", "--images", "10", "--unique", "5",
         "--software-images", "8", "--shapes-per-label", "3", "--models", "resnet18", "--state", str(tmp_path / "state"), "--weights-from", str(model_dir),
         "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == figures
    assert figures["node"].endswith("(taskset cores [0])")
    assert figures["decode_img_s"] > 0 and figures["gpu_decode_img_s"] > 0 and figures["cpu_side_ms_per_image"] > 0
    assert figures["gpu_decode_host_cpu_ms_per_image"] > 0
    assert figures["pixel_difference"]["files"] == 5 == figures["pixel_difference"]["decoded_on_gpu"]
    assert figures["auto_choice"]["decoder"] == "pillow" and figures["auto_choice"]["workers"] == 1
    assert figures["auto_choice"]["probe"]["sample"] == "10 of the month's JPEGs"  # the run's own, not a stand-in
    measured = figures["models"]["resnet18"]
    assert set(measured["pipeline_img_s"]) == {"pillow", "torchvision", "auto"}
    assert all(run == {"images": 10, "scored": 10, "seconds": run["seconds"], "workers_ready_s": run["workers_ready_s"]}
               for run in measured["runs"].values())
    assert all(0 < run["workers_ready_s"] < run["seconds"] for run in measured["runs"].values())  # the job's own
    assert measured["forward_img_s"] > 0 and 0.9 <= measured["top1_agreement"] <= 1
    verdict = figures["verdict"]["resnet18"]
    target = min(2 * figures["decode_img_s"], 0.7 * measured["forward_img_s"])
    assert verdict["target_img_s"] == round(target, 1)
    assert verdict["target_met"] == (measured["pipeline_img_s"]["torchvision"] >= target)
    software = figures["software_path"]
    assert software["model"] == "resnet18" and software["images"] == 8
    assert software["gpu_decode_img_s"] > 0 and software["host_cpu_ms_per_image"] > 0
    assert set(software["pipeline_img_s"]) == set(software["runs"]) == {"torchvision", "pillow"}
    assert all(run == {"images": 8, "scored": 8, "seconds": run["seconds"], "workers_ready_s": run["workers_ready_s"]}
               for run in software["runs"].values())
    assert software["auto_choice"]["probe"]["sample"] == "8 of the month's JPEGs"  # the progressive copies
    shapes = measured["shapes_top1_agreement"]  # 4 labels x 3 drawn images, and the demo's 5 broken files
    assert shapes["runs"]["pillow"]["images"] == 17 and shapes["runs"]["pillow"]["scored"] == 12
    assert 0.9 <= shapes["top1_agreement"] <= 1 and 0 < shapes["jpegs"] <= 12
    progressive = sorted((tmp_path / "state" / "images-progressive").glob("*.jpg"))
    assert len(progressive) == 5 and all(Image.open(path).info.get("progressive") for path in progressive)
    software_verdict = figures["verdict"]["software_path"]
    reaches = software["pipeline_img_s"]["torchvision"] >= target
    not_slower = software["pipeline_img_s"]["torchvision"] >= software["pipeline_img_s"]["pillow"]
    assert software_verdict == {"model": "resnet18", "target_img_s": round(target, 1),
                                "gpu_decoding_reaches_target": reaches, "not_slower_than_pillow": not_slower,
                                "auto_never_slower": True, "target_met": reaches and not_slower}  # auto: pillow


def test_the_gpu_sweep_splits_each_layout_into_start_up_and_steady_rate_as_a_dry_run_on_cpu(tmp_path, model_dir):
    """bench.gpu_sweep's layouts on the CPU, pinned to one core: each layout's two runs, and the JSON it rewrites."""
    out = tmp_path / "sweep.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_sweep", "12", "--device", "cpu", "--cores", "1", "--models", "resnet18",
         "--decoder", "torchvision", "--layouts", "1:0", "1:-1:4", "--startup-images", "4",
         "--state", str(tmp_path / "state"), "--weights-from", str(model_dir), "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == report
    assert report["cores"] == [0] and report["decoder"] == "torchvision"
    assert [(row["workers"], row["decode_threads"], row["mini_batch_size"]) for row in report["layouts"]] == \
        [(1, 0, None), (1, -1, 4)]
    assert all(row["img_s"] > 0 and 0 < row["workers_ready_s"] < row["seconds"] for row in report["layouts"])


def test_steady_state_solves_two_runs_for_the_rate_and_the_start_up():
    from bench.gpu_sweep import steady_state

    # 10 s to start, then 1,000 img/s: 20,000 files in 30 s, 500 in 10.5 s.
    rate, startup = steady_state(20_000, 30.0, 500, 10.5)
    assert round(rate, 6) == 1000.0 and round(startup, 6) == 10.0
    assert steady_state(500, 10.0, 500, 9.0) == (None, None)  # same file count: nothing to tell
    assert steady_state(20_000, 9.0, 500, 10.0) == (None, None)  # the larger run was faster: noise


def test_a_layout_is_workers_threads_and_an_optional_mini_batch():
    import argparse

    import pytest

    from bench.gpu_sweep import layout

    assert layout("4:0") == (4, 0, None) and layout("2:-1:256") == (2, -1, 256)
    for wrong in ("4", "0:0", "4:0:0", "a:b", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError):
            layout(wrong)


def test_worker_startup_times_every_step_of_a_workers_start_on_cpu(tmp_path, model_dir):
    """bench.worker_startup in a fresh process, as gpu.sh runs it on one core: every step, and both mini-batches
    scored."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(8):
        Image.new("RGB", (64 + index, 48), (index * 30, 100, 200)).save(images / f"{index}.jpg")
    result = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "bench.worker_startup", "--model", str(model_dir), "--input",
         str(images), "--device", "cpu", "--decoder", "torchvision", "--workers", "4", "--mini-batch", "4"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(report["steps"]) == ["import_torch_s", "cuda_context_s", "import_scoring_s", "scorer_init_s",
                                     "first_mini_batch_s", "second_mini_batch_s"]
    assert report["steps"]["import_torch_s"] > 0.1  # timed from before torch is imported
    assert report["total_s"] >= sum(report["steps"].values()) - 0.01
    assert "decoder torchvision" in report["profile"] and report["device"] == "cpu"
    assert list(report["init_steps"]) == ["capabilities", "model", "batch_fit", "decoder"]
    assert sum(report["init_steps"].values()) <= report["steps"]["scorer_init_s"] + 0.01


def test_worker_startup_starts_several_workers_at_once_as_a_node_does(tmp_path, model_dir):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(4):
        Image.new("RGB", (64 + index, 48), (index * 30, 100, 200)).save(images / f"{index}.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "bench.worker_startup", "--model", str(model_dir), "--input", str(images),
         "--device", "cpu", "--decoder", "pillow", "--workers", "2", "--mini-batch", "2", "--concurrent", "2"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["concurrent"] == 2 and len(report["workers"]) == 2
    assert len({worker["total_s"] for worker in report["workers"]} | {report["slowest_total_s"]}) <= 2
    assert report["slowest_total_s"] == max(worker["total_s"] for worker in report["workers"])
    assert all(list(worker["init_steps"]) == ["capabilities", "model", "batch_fit", "decoder"]
               for worker in report["workers"])

"""The benchmark runs and reports every figure (tiny sizes; its numbers are checked by `make bench`, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
         "--models", "resnet18", "--state", str(tmp_path / "state"), "--weights-from", str(model_dir),
         "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == figures
    assert figures["node"].endswith("(taskset cores [0])")
    assert figures["decode_img_s"] > 0 and figures["gpu_decode_img_s"] > 0 and figures["cpu_side_ms_per_image"] > 0
    assert figures["pixel_difference"]["files"] == 5 == figures["pixel_difference"]["decoded_on_gpu"]
    assert figures["auto_choice"]["decoder"] == "pillow" and figures["auto_choice"]["workers"] == 1
    measured = figures["models"]["resnet18"]
    assert set(measured["pipeline_img_s"]) == {"pillow", "torchvision", "auto"}
    assert all(run == {"images": 10, "scored": 10, "seconds": run["seconds"]} for run in measured["runs"].values())
    assert measured["forward_img_s"] > 0 and 0.9 <= measured["top1_agreement"] <= 1
    verdict = figures["verdict"]["resnet18"]
    target = min(2 * figures["decode_img_s"], 0.7 * measured["forward_img_s"])
    assert verdict["target_img_s"] == round(target, 1)
    assert verdict["target_met"] == (measured["pipeline_img_s"]["torchvision"] >= target)

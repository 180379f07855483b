"""The benchmark runs and reports every figure (tiny sizes; its numbers are checked by `make bench`, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from support import write_small_month

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_bench_reports_every_figure(tmp_path, model_dir):
    write_small_month(tmp_path / "month")
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--images", "12", "--large", "24", "--rss-images", "12",
         "--naive-images", "4", "--state", str(tmp_path / "state"), "--out", str(out),
         "--agreement-model", str(model_dir), "--agreement-month", str(tmp_path / "month")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last_line = json.loads(result.stdout.strip().splitlines()[-1])
    assert last_line == json.loads(out.read_text())
    for key in ("naive_img_s", "pipeline_img_s", "decode_img_s", "forward_img_s", "ceiling_img_s",
                "peak_rss_mb_12", "peak_rss_mb_24", "top1_agreement_vs_fp32"):
        assert last_line[key] > 0, key
    assert last_line["ceiling_img_s"] <= min(last_line["decode_img_s"], last_line["forward_img_s"])
    assert last_line["device"] and last_line["model"] == "resnet18"
    assert last_line["precision"] in ("bf16", "fp32") and last_line["images"] == 12

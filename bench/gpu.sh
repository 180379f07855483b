#!/usr/bin/env bash
# The GPU check of the scoring step, as one run on a CUDA host whose python3 has torch and torchvision
# (no Airflow, no Azure SDK, no Azurite there: dag_job_img_s is measured on CPU hosts only).
# Usage: bench/gpu.sh <output folder>
set -uo pipefail
out=${1:?output folder}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torchvision, os; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cpus', os.cpu_count())" | tee -a "$out/gpu.txt"
echo "== bench, ResNet-50"
timeout 420 python3 -m bench.run --model resnet50 --images 2000 --rss-images 1000 --large 4000 --naive-images 200 \
    --out "$out/results-gpu.json" 2>&1 | tee "$out/bench-gpu.log" | grep -v "^\s*$" | tail -25
echo "== nvJPEG decode on the GPU"
timeout 60 python3 -m bench.gpu_decode --images 2000 | tee "$out/gpu-decode.json"
echo "== a job that asks for CUDA where none is visible fails at init() in one line"
mkdir -p /tmp/one && python3 -c "from PIL import Image; Image.new('RGB', (64, 64)).save('/tmp/one/a.jpg')"
CUDA_VISIBLE_DEVICES= timeout 120 python3 -m scoring score --input /tmp/one --model .state/bench/model-resnet50-cuda \
    --out /tmp/one-out --device cuda 2>&1 | tail -1 | tee "$out/no-gpu.txt"

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
echo "== a Standard_NC4as_T4_v3 node (4 vCPUs) stood for by 4 cores: the job's defaults for 4 vCPUs, CPU vs GPU decoding"
# pipeline_img_s decodes with Pillow, pipeline_batched_decode_img_s with nvJPEG; decode_img_s is the 4-core CPU wall,
# forward_img_s the GPU forward ceiling (auto precision, channels-last), gpu_decode_img_s decode + resize alone.
for model in resnet18 resnet50; do
    taskset -c 0-3 timeout 1800 python3 -m bench.run --model "$model" --settings defaults --images 20000 \
        --rss-images 1000 --large 2000 --naive-images 100 --validation-rows 1000 --flat-small 1000 --flat-large 2000 \
        --out "$out/results-gpu-4core-$model.json" 2>&1 | tee "$out/bench-4core-$model.log" | tail -3
done

#!/usr/bin/env bash
# The GPU checks of the scoring step, as one run of about 6 minutes on a CUDA host whose python3 has torch,
# torchvision, Pillow, numpy, pandas, psutil and pytest (no Airflow, no Azure SDK, no Azurite needed there).
# Usage: bench/gpu.sh <output folder>
#   1. the batched-decoding tests on CUDA tensors (nvJPEG, the decode stream, the fallbacks, the error rows);
#   2. bench.gpu_node: the Standard_NC4as_T4_v3 node's figures on 4 cores, then the T4's software decoding path
#      stood for by progressive files (results-gpu-node.json, rewritten after every figure, so a run cut short
#      keeps what it measured);
#   3. one worker's start-up, step by step, alone on a core, then the node's 4 starting at once on its 4 cores
#      (bench.worker_startup, worker-startup.json);
#   4. a job that asks for CUDA where none is visible fails at init() in one line.
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torchvision, os; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cpus', os.cpu_count())" | tee -a "$out/gpu.txt"
status=0
echo "== the batched decoding tests on CUDA tensors"
SCORING_TEST_DEVICE=cuda timeout 120 python3 -m pytest -q -p no:cacheprovider tests/scoring/test_jpeg_decode.py \
    tests/scoring/test_decoders.py tests/scoring/test_cli.py -k "jpeg or decod" > "$out/tests-cuda.log" 2>&1 || status=1
tail -15 "$out/tests-cuda.log"
echo "== a Standard_NC4as_T4_v3 node (4 vCPUs) stood for by 4 cores: ResNet-18 and ResNet-50, CPU vs GPU decoding"
timeout 420 python3 -m bench.gpu_node --cores 4 --images 20000 --models resnet18 resnet50 \
    --out "$out/results-gpu-node.json" > "$out/gpu-node.log" 2>&1 || status=1
grep -v '^{' "$out/gpu-node.log" | tail -20
echo "== where one worker's start-up goes (one core, as each of the node's 4 workers has while they start)"
for decoder in torchvision auto; do
    taskset -c 0 timeout 60 python3 -m bench.worker_startup --model .state/bench/model-resnet18-cuda \
        --input .state/bench/images --decoder "$decoder" --workers 4 2>&1 | tail -1 | tee -a "$out/worker-startup.json" || status=1
done
echo "== the node's 4 workers starting at once on its 4 cores, as a job starts them"
taskset -c 0-3 timeout 90 python3 -m bench.worker_startup --model .state/bench/model-resnet18-cuda \
    --input .state/bench/images --decoder auto --workers 4 --concurrent 4 2>&1 | tail -1 \
    | tee -a "$out/worker-startup.json" || status=1
echo "== a job that asks for CUDA where none is visible fails at init() in one line"
mkdir -p /tmp/one && python3 -c "from PIL import Image; Image.new('RGB', (64, 64)).save('/tmp/one/a.jpg')"
CUDA_VISIBLE_DEVICES= timeout 30 python3 -m scoring score --input /tmp/one --model .state/bench/model-resnet18-cuda \
    --out /tmp/one-out --device cuda 2>&1 | tail -1 | tee "$out/no-gpu.txt"
exit $status

#!/usr/bin/env bash
# What one lent GPU machine runs (the `run` tool of this project's sessions), most valuable
# first, each part under its own timeout, results under $OUT:
#   the CUDA-only tests of the strong view; CUDA vs CPU pixels (cuda_fidelity.py);
#   the throughput table with the strong view as one CUDA graph (the CUDA default) and
#   grouped (as measured on 2026-11-25); a profile of one step; and the reference's own
#   setting, 2 cores of the host's AMX CPU in bf16 (ResNet-18).
# Needs the protocol subset at .gpudata/cifar-10-python.tar.gz (dev/subset_archive.py).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
D=.gpudata/cifar-10-python.tar.gz
nvidia-smi -L
python3 -c "import torch, sys; print(torch.__version__, sys.version.split()[0])"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_augment.py -k "cuda or dense" 2>&1 | tail -3
timeout 60 python3 benchmarks/cuda_fidelity.py --archive $D --out $OUT/cuda_fidelity.json | tail -30
T="--archive $D --steps small_cnn=39,resnet18=39 --repeats small_cnn=2,resnet18=2 --batch resnet18=256 --memory-steps 0"
timeout 150 python3 benchmarks/throughput.py $T --augment graph --out $OUT/throughput-gpu-graph.json 2>&1 | grep -v Warn
timeout 150 python3 benchmarks/throughput.py $T --augment grouped --out $OUT/throughput-gpu-grouped.json 2>&1 | grep -v Warn
timeout 60 python3 benchmarks/op_count.py --archive $D --out $OUT/op_count-gpu.json --profile $OUT/profile-gpu.txt 2>&1 | grep -v USDT | tail -3
PIN=$(command -v taskset >/dev/null && echo "taskset -c 0,1")
OMP_NUM_THREADS=2 timeout 200 $PIN python3 benchmarks/throughput.py --archive $D --device cpu --threads 2 --models resnet18 --precision bf16 --precision-batch 64 --memory-steps 0 --out $OUT/throughput-amx2.json 2>&1 | grep -v Warn

# Issue 18 on the GPU: base Transformer bf16, MFU against the batch size (25k vs 100k tokens), and a
# compiled row with few steps (compiling did not finish in 180 s with 20 batch shapes).
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NMT_DATA_ROOT=$PWD/.gpudata PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv
timeout 100 python3 scripts/benchmark.py --device cuda --amp bf16 --models transformer_base --max-tokens 25000 --steps 8 --json $OUT/bf16_25k.json 2>&1 | tee $OUT/bf16_25k.log
timeout 130 python3 scripts/benchmark.py --device cuda --amp bf16 --models transformer_base --max-tokens 100000 --steps 8 --json $OUT/bf16_100k.json 2>&1 | tee $OUT/bf16_100k.log
timeout 270 python3 scripts/benchmark.py --device cuda --amp bf16 --compile --models transformer_base --max-tokens 100000 --steps 4 --repeats 3 --json $OUT/bf16_100k_compiled.json 2>&1 | tee $OUT/bf16_100k_compiled.log

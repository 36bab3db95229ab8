#!/usr/bin/env bash
# Everything in this repository that needs a GPU, in one go: build the extension in place for
# this machine's GPU, run the CUDA tests (pytest -m cuda), then the CUDA benchmarks.
#
#   bash benchmarks/gpu_checks.sh [RESULTS_DIR]      # default benchmarks/results
#
# For a GPU machine whose python3 already holds torch, torchvision, timm, pytest and hypothesis
# but cannot reach a package registry (a cluster node, a lent cloud GPU): nothing is installed,
# the extension is built for the local GPU only, and the repository is put on PYTHONPATH.
# With a normal install (`make setup` on a machine with nvcc), the same checks are
# `.venv/bin/python -m pytest -m cuda` and the two benchmark commands below.
set -euo pipefail
results=${1:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$results"

arch=$($py -c 'import torch; print("%d%d" % torch.cuda.get_device_capability())')
build=build/gpu-sm$arch
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSGF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch-real" \
  -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$($py -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build"
cp "$build"/_C*.so msgf/
export PYTHONPATH=$PWD:$PWD/threshold_search/src${PYTHONPATH:+:$PYTHONPATH}
$py -c 'import torch, msgf.ops; print("torch", torch.__version__, torch.cuda.get_device_name(), msgf.ops.backends())'

# -m cuda: only the tests that need the device (the rest run in CI without one)
# (a failing test does not stop the benchmarks; the script's status is the tests')
status=0
$py -m pytest -q -p no:cacheprovider -m cuda --durations=5 tests 2>&1 | tee "$results/gpu-tests.log" || status=$?
$py benchmarks/crop.py --device cuda --out "$results"
$py benchmarks/engine.py --device cuda --image-size 960 --num-images 1024 --batch-size 128 --out "$results"
exit $status

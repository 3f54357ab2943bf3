#!/usr/bin/env bash
# Wheels for running the GPU part of bench/train.py on a CUDA machine that has PyTorch,
# Transformers, Triton, PyArrow and PyYAML but no trajlake and no internet (a lent GPU box, a
# locked-down cluster node): trajlake itself, pydantic and its parts at the versions installed
# here, and liger-kernel, for CPython ${PYVER:-3.12} on x86_64 Linux, into DIR (default .whl).
#
#   bench/gpu_wheels.sh [DIR]
#   # then, on the GPU machine, from the repository root with DIR copied there:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#   PYTHONPATH=/tmp/site python3 bench/train.py --gpu-only --gpu-steps 3
#
# Check the result on the CPU first: the same install, then `--gpu-dry-run` instead of
# `--gpu-only` (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.whl}
mkdir -p "$out"

pinned() {  # NAME==VERSION as installed here, so the GPU machine runs what the tests ran
  python -c "import importlib.metadata as m, sys; print(sys.argv[1] + '==' + m.version(sys.argv[1]))" "$1"
}

python -m pip wheel -q --no-deps --no-build-isolation -w "$out" .
python -m pip download -q --no-deps --only-binary=:all: -d "$out" \
  --python-version "${PYVER:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "$(pinned pydantic)" "$(pinned pydantic-core)" "$(pinned annotated-types)" \
  "$(pinned typing-inspection)" "liger-kernel==0.8.5"
ls -1 "$out"

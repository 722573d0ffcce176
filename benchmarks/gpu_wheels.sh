#!/usr/bin/env bash
# Prepares .gpu-wheels/ on a machine with PyPI: what benchmarks/gpu_check.sh installs on a GPU machine that has no
# package index (Python 3.12, x86-64 Linux, CUDA 13 driver; its image already has numba, numpy and cupy-cuda13x).
# It holds numba-cuda and its CUDA 13 bindings, pandas, pytest and their small dependencies, and NVVM (libnvvm and
# libdevice from the nvidia-nvvm wheel, repacked with xz: the wheel is 72 MB, the repack ~21 MB) -- about 52 MB,
# under the 64 MiB a device run may carry. Run it once; then carry .gpu-wheels with the run.
#
# usage: bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-wheels
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu-wheels.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pick=(--only-binary :all: --no-deps --python-version 3.12 --implementation cp --abi cp312
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64
      --platform manylinux_2_12_x86_64)
python -m pip download -q "${pick[@]}" -d "$tmp/wheels" \
  numba-cuda==0.30.4 "cuda-bindings==13.*" "cuda-core>=0.5.1,<2" "cuda-pathfinder>=1.4,<2" packaging \
  "pandas>=2.1" python-dateutil six tzdata pytest pluggy iniconfig pygments
python -m pip download -q "${pick[@]}" -d "$tmp/nvvm" "nvidia-nvvm==13.*"
mkdir -p "$tmp/x" "$tmp/home/nvvm/lib64" "$tmp/home/nvvm/libdevice"
python -m zipfile -e "$tmp"/nvvm/nvidia_nvvm-*.whl "$tmp/x"
lib=$(find "$tmp/x" -name 'libnvvm.so*' -type f | head -n 1)
bc=$(find "$tmp/x" -name 'libdevice.10.bc' -type f | head -n 1)
[ -n "$lib" ] && [ -n "$bc" ] || { echo "error: libnvvm or libdevice not found in the nvidia-nvvm wheel" >&2; exit 4; }
cp "$lib" "$tmp/home/nvvm/lib64/libnvvm.so"
cp "$bc" "$tmp/home/nvvm/libdevice/"
tar -C "$tmp/home" -cJf "$tmp/wheels/nvvm.tar.xz" nvvm  # CUDA_HOME layout: nvvm/lib64, nvvm/libdevice
size=$(du -sm "$tmp/wheels" | cut -f1)
if [ "$size" -gt 60 ]; then
  echo "error: .gpu-wheels would be ${size} MB, over the 60 MB that leaves room for the code in a 64 MiB carry" >&2
  exit 2
fi
rm -rf "$dest"
mv "$tmp/wheels" "$dest"
echo "wrote $dest (${size} MB): carry it with the device run of benchmarks/gpu_check.sh"

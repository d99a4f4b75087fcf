#!/usr/bin/env bash
# The GPU check on a device machine of this workplace (one NVIDIA H200; Python 3.12 with
# torch cu130 and no network there):
#
#   analysis/gpu_device.sh prep       # here: .whl/ (cp312 wheels), .gpu/ (CUDA 12 runtime, stub)
#   analysis/gpu_device.sh run OUT    # there, carrying .whl and .gpu: install, run
#                                     # tests/test_gpu.py and analysis/gpu_check.py --out OUT
#
# The package's dependencies missing there travel as wheels, pinned to this checkout's
# virtualenv. astra-toolbox's wheel links libcudart.so.12 and libcufft.so.11 (its
# nvidia-*-cu12 dependencies; cuFFT's wheel is about 280 MB, over the 64 MiB a call may
# carry): libcudart.so.12 comes out of its small wheel, and libcufft.so.11 is a stub of the
# five symbols astra links for its GPU FBP filter, which bayes_inr never calls (it uses
# astra's CPU projector matrix only). Both go on LD_LIBRARY_PATH there, beside torch's own
# CUDA 13 libraries, which they do not replace.
set -euo pipefail

WHEELS="pyro-ppl pyro-api astra-toolbox arviz xarray-einstats h5netcdf platformdirs pydicom
scoringrules"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

prep() {
    local py=${PYTHON:-.venv/bin/python} exclude pins
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    for dir in /.whl/ /.gpu/; do
        grep -qxF "$dir" "$exclude" 2>/dev/null || echo "$dir" >>"$exclude"
    done
    # shellcheck disable=SC2086
    pins=$("$py" -c "import importlib.metadata as m, sys
print(' '.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))" $WHEELS)
    rm -rf .whl .gpu && mkdir -p .whl .gpu/wheel
    # shellcheck disable=SC2086
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $PLATFORMS -d .whl $pins
    # shellcheck disable=SC2086
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $PLATFORMS -d .gpu/wheel \
        "nvidia-cuda-runtime-cu12==$("$py" -c "import importlib.metadata as m
print(m.version('nvidia-cuda-runtime-cu12'))")"
    unzip -j -o -q .gpu/wheel/*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' -d .gpu
    rm -rf .gpu/wheel
    cat >.gpu/cufft_stub.c <<'EOF'
/* libcufft.so.11 for astra-toolbox's wheel: every call fails (CUFFT_NOT_SUPPORTED). */
int cufftPlan1d(void *plan, int nx, int type, int batch) { return 16; }
int cufftExecR2C(void *plan, void *in, void *out) { return 16; }
int cufftExecC2R(void *plan, void *in, void *out) { return 16; }
int cufftDestroy(int plan) { return 16; }
int cufftSetStream(int plan, void *stream) { return 16; }
EOF
    echo 'libcufft.so.11 { global: cufft*; local: *; };' >.gpu/cufft.map
    gcc -shared -fPIC -O2 -o .gpu/libcufft.so.11 -Wl,-soname,libcufft.so.11 \
        -Wl,--version-script=.gpu/cufft.map .gpu/cufft_stub.c
    ls -l .whl .gpu
    du -sh .whl .gpu
}

run() {
    local out=${1:?usage: gpu_device.sh run OUT} tests check
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
    export LD_LIBRARY_PATH="$PWD/.gpu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    set +e  # from here on, every step runs and reports
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, pyro, astra, arviz, scoringrules, h5netcdf, bayes_inr.fit
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(),
      'pyro', pyro.__version__, 'astra', astra.__version__, 'arviz', arviz.__version__)"
    timeout 150 python3 -m pytest -q -p no:cacheprovider -rs --durations=8 tests/test_gpu.py \
        2>&1 | tee "$out/pytest_gpu.txt"
    tests=${PIPESTATUS[0]}
    timeout 240 python3 analysis/gpu_check.py --out "$out" 2>&1 | tee "$out/gpu_check.log"
    check=${PIPESTATUS[0]}
    echo "pytest exit $tests, gpu_check exit $check"
    [ "$tests" = 0 ] && [ "$check" = 0 ]
}

case ${1:-} in
    prep) prep ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prep | run OUT" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The GPU check of l2loss, as one command on a machine with an NVIDIA GPU and
# CuPy, PyTorch (CUDA) and JAX (CUDA) installed:
#
#     bash benchmarks/gpu.sh [OUTDIR]
#
# 1. the test suite as the nox sessions run it (pytest -m "not docs"), on
#    CuPy, on PyTorch with CUDA tensors (L2LOSS_DEVICE=cuda) and on JAX's GPU
#    backend, the three at once (separate processes; the timings come after;
#    L2LOSS_GPU_SESSIONS="cupy torch-cuda" picks some);
# 2. `python benchmarks/gpu.py --tiles --parts`: l2loss against the plain CuPy
#    expression, torch.func.jvp, jax.jit(jax.jvp) and the cuBLAS dot ceiling,
#    per-sample losses (axis=-1), the tile sweep and the kernels alone
#    (L2LOSS_GPU_BENCH=0 skips it).
#
# Logs, bench-gpu.json and bench-gpu.png go to OUTDIR (default: $OUT, else
# ./gpu-out). A machine with no package registry gets the pure-Python wheels
# that tests need but the machine lacks from .whl/ (array-api-compat,
# array-api-strict: `pip download` them there first), installed into
# /tmp/site. l2loss itself is imported from this checkout's src/.
# Exit status: non-zero when any test run or the benchmark failed.
set -u
out=$(realpath -m "${1:-${OUT:-gpu-out}}")
mkdir -p "$out"
cd "$(dirname "$0")/.." || exit # the checkout's root: src/, tests/, .whl/
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 JAX_ENABLE_X64=1
# JAX would otherwise take 75% of the GPU's memory in every process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
{
    nvidia-smi
    python3 -m pip list 2>/dev/null |
        grep -i -E '^(numpy|cupy|torch|jax|jaxlib|hypothesis|pytest|array)[-_ ]'
} >"$out/machine.txt" 2>&1

status=$(mktemp -d)
tests() { # NAME VAR=VALUE...: one test session, its log in $out/tests-NAME.log
    local name=$1
    shift
    env "$@" timeout "${L2LOSS_GPU_TEST_SECONDS:-300}" \
        python3 -m pytest -m "not docs" -q -p no:cacheprovider >"$out/tests-$name.log" 2>&1
    echo "$? tests-$name: $(tail -n 1 "$out/tests-$name.log")" >"$status/$name"
}
sessions=${L2LOSS_GPU_SESSIONS:-cupy torch-cuda jax-gpu}
for s in $sessions; do
    case $s in
    cupy) tests cupy L2LOSS_BACKEND=cupy & ;;
    torch-cuda) tests torch-cuda L2LOSS_BACKEND=torch L2LOSS_DEVICE=cuda & ;;
    # JAX_PLATFORMS=cuda: fail, rather than fall back to the CPU, without the GPU
    jax-gpu) tests jax-gpu L2LOSS_BACKEND=jax JAX_PLATFORMS=cuda & ;;
    *) echo "1 unknown session $s" >"$status/$s" ;;
    esac
done
wait
failed=0
for f in "$status"/*; do
    read -r rc line <"$f"
    echo "$line (exit $rc)"
    [ "$rc" = 0 ] || failed=1
done
rm -r "$status"

if [ "${L2LOSS_GPU_BENCH:-1}" = 1 ]; then
    # shellcheck disable=SC2086  # L2LOSS_GPU_BENCH_ARGS is a list of options
    python3 benchmarks/gpu.py --out "$out" --tiles --parts ${L2LOSS_GPU_BENCH_ARGS:-} 2>&1 |
        tee "$out/bench.log"
    [ "${PIPESTATUS[0]}" = 0 ] || failed=1
fi
exit $failed

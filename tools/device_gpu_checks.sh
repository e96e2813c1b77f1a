#!/usr/bin/env bash
# The GPU checks, prepared as one script for a session that is lent the GPU machine (the `device` tool):
#
#     run(command="bash tools/device_gpu_checks.sh", timeout_s=560)
#
# That machine has CUDA PyTorch, ONNX Runtime, OpenCV, SciPy and pytest in its own Python (no ROS, no venv, no
# network): the package runs from the source tree (PYTHONPATH). It runs
#   1. tests/test_inference_cuda.py (CUDA parity, fp16/bf16, pinned uploads, device post-processing, CUDA RNG in
#      checkpoints) and tests/test_inference_tensorrt.py + test_inference_engine_cache.py (TensorRT; they skip with
#      the reason when the `tensorrt` package is absent),
#   2. the GPU benchmark of the README: STDC1/STDC2 at 512x512 and 1024x2048, fp32/fp16, torch (and TensorRT when
#      importable), semantic + panoptic, batch 1, with a table printed at the end.
# Wheels carried in .whl/ (see the device tool's README: e.g. tensorrt) are installed first. Everything lands in
# $OUT (env.txt, tests.log, bench.json, bench.png); the exit status is the test run's. DEVICE (cuda), PRECISIONS
# (fp32 fp16), SIZES (512x512 1024x2048) and ITERS (50) override the benchmark grid, e.g. on a Jetson.
set -u -o pipefail
OUT="${OUT:-/tmp/bisenetformer_gpu_checks}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{
    nvidia-smi -L || true
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')"
    "$PY" -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>/dev/null || echo "tensorrt: not importable"
} 2>&1 | tee "$OUT/env.txt"

timeout 240 "$PY" -m pytest -q -rs -p no:cacheprovider \
    tests/test_inference_cuda.py tests/test_inference_tensorrt.py tests/test_inference_engine_cache.py 2>&1 \
    | tee "$OUT/tests.log"
status=${PIPESTATUS[0]}

backends=(torch)
"$PY" -c "import tensorrt" 2>/dev/null && backends+=(tensorrt)
# shellcheck disable=SC2086  # SIZES and PRECISIONS are word lists
timeout 260 "$PY" -m bisenetformer_ros.cli.main benchmark --backend "${backends[@]}" --device "${DEVICE:-cuda}" \
    --precision ${PRECISIONS:-fp32 fp16} --backbone stdc1 stdc2 --sizes ${SIZES:-512x512 1024x2048} \
    --iters "${ITERS:-50}" --warmup 10 --quiet \
    --json >"$OUT/bench.json" 2>"$OUT/bench.err" || tail -20 "$OUT/bench.err"
"$PY" - "$OUT/bench.json" "$OUT/bench.png" <<'PYEOF'
import json, sys
try:
    runs = json.load(open(sys.argv[1]))["runs"]
except (OSError, ValueError, KeyError) as exc:
    sys.exit(f"no benchmark results: {exc}")
if any("fps" in r for r in runs):
    from bisenetformer_ros.inference.benchmark import plot_runs

    plot_runs(runs, sys.argv[2], title="GPU benchmark, batch 1")
print("| backbone | size | backend | precision | network p50 ms | total p50 ms | FPS | device peak MB |")
print("|---|---|---|---|---|---|---|---|")
for r in runs:
    if "error" in r:
        q = r.get("_request", {})
        what = f"{q.get('backbone')} | {q.get('height')}x{q.get('width')} | {q.get('backend')} | {q.get('precision')}"
        print(f"| {what} | error: {r['error'][:100]} | | | |")
        continue
    s = r["stages"]
    print(
        f"| {r['backbone']} | {r['height']}x{r['width']} | {r['backend']} | {r['precision']} | "
        f"{s['inference']['p50']:.2f} | {s['total']['p50']:.2f} | {r['fps']:.1f} | {r['device_peak_mb'] or 0:.0f} |"
    )
PYEOF
exit "$status"

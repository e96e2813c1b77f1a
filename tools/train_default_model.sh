#!/usr/bin/env bash
# Reproduces the embedded default model bisenetformer_ros/models/synthetic_stdc1.pt:
#   1. trains BiSeNetFormer-STDC1 from scratch on synthetic scenes (config/train/synthetic.yaml, <= 55 min on 2 cores),
#   2. scores fp16 snapshots on the held-out synthetic split (different seeds) for the learning curve,
#   3. writes the fp16 model file, its evaluation JSON and docs/training_curve.png.
# Usage: bash tools/train_default_model.sh [run_dir] [key=value overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh >/dev/null
RUN_DIR="${1:-runs/synthetic_stdc1}"
shift || true
PY=.venv/bin/python
.venv/bin/bisenetformer train --config config/train/synthetic.yaml --run-dir "$RUN_DIR" \
  --export "$RUN_DIR/model_fp16.pt" --half snapshot_every=500 "$@"
$PY tools/score_snapshots.py "$RUN_DIR" --out docs/training_curve.png
mkdir -p bisenetformer_ros/models
cp "$RUN_DIR/model_fp16.pt" bisenetformer_ros/models/synthetic_stdc1.pt
.venv/bin/bisenetformer evaluate --model bisenetformer_ros/models/synthetic_stdc1.pt --dataset synthetic --json \
  | tee docs/default_model_eval.json

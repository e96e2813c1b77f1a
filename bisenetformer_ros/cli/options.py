"""Options and checks shared by the ``bisenetformer`` sub-commands: one spelling for one idea, one way to fail.

* ``--input-size S|HxW|native`` (:func:`add_input_size_option`): the network input size; absent = the size the model
  file records (:mod:`bisenetformer_ros.model.network_size`), ``native`` = each image's own size.
* ``--quiet`` / ``-q`` (:func:`add_quiet_option`): no progress bars. ``--no-progress`` is accepted as a hidden alias
  so scripts written for the old spelling keep working.
* argparse types that refuse nonsense up front with the option's name (:func:`int_at_least`, :func:`float_above`,
  :func:`ros_domain_id`, :func:`fraction`), so ``--duration -1`` or ``--frames 0`` is an error, not an empty result.
* :class:`OneLineErrorParser`: a usage error is one line ``bisenetformer <command>: error: ...`` and exit code 2.
* :func:`new_output_dir` / :func:`check_output_dir` / :func:`check_output_file`: output paths are checked before
  any work, and a failed command leaves nothing half-written behind.

No heavy imports: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

from bisenetformer_ros.backend_choice import BACKEND_CHOICES, DEFAULT_BACKEND

#: Exit code of every command for bad input (usage errors, unreadable files, impossible values).
EXIT_BAD_INPUT = 2

#: ROS_DOMAIN_ID range that DDS implementations accept on every platform (ROS 2 docs, "The ROS_DOMAIN_ID").
MAX_DOMAIN_ID = 232


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming the command (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def one_line(exc: BaseException) -> str:
    """The text of an exception on one line (multi-line messages joined with '; ')."""
    parts = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(parts) if parts else type(exc).__name__


# ----------------------------------------------------------------------------------------------------- value types


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def float_above(minimum: float, inclusive: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number > ``minimum`` (>= with ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (value == minimum and not inclusive):
            relation = "at least" if inclusive else "greater than"
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float_above(0.0, inclusive=True)(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def ros_domain_id(text: str) -> int:
    """argparse type: a ROS_DOMAIN_ID (0..232); larger ids make rmw fail to create a participant."""
    value = int_at_least(0)(text)
    if value > MAX_DOMAIN_ID:
        raise argparse.ArgumentTypeError(f"a ROS domain id is 0..{MAX_DOMAIN_ID}, got {value}")
    return value


# ----------------------------------------------------------------------------------------------------- options


def input_size_type(text: str) -> int | tuple[int, int] | str:
    """argparse type of ``--input-size``: see :func:`bisenetformer_ros.model.network_size.parse_input_size`."""
    from bisenetformer_ros.model.network_size import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_input_size_option(p: argparse.ArgumentParser | Any) -> None:
    """``--input-size S|HxW|native`` (default: the size the model file records)."""
    p.add_argument(
        "--input-size",
        type=input_size_type,
        default=None,
        metavar="S|HxW|native",
        help="network input size: short side (e.g. 512), HEIGHTxWIDTH (e.g. 512x1024) or 'native' (each image's "
        "own size); default: the size recorded in the model file, as the node uses it",
    )


def add_quiet_option(p: argparse.ArgumentParser | Any) -> None:
    """``--quiet`` / ``-q``: no progress bars (``--no-progress``: hidden alias of the old spelling)."""
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def add_tracking_options(p: argparse.ArgumentParser | Any) -> None:
    """``--tracking on|off`` and the tracker settings, with the node's defaults (``tracking.*`` parameters)."""
    from bisenetformer_ros.tracking import TrackerConfig

    d = TrackerConfig()
    p.add_argument(
        "--tracking",
        choices=("on", "off"),
        default="on",
        help="track panoptic instances over the frames, as the node does (default on); the video metrics are "
        "reported for the tracker and for per-frame ids (the baseline) either way when the ground truth has "
        "identities",
    )
    p.add_argument("--track-min-iou", type=fraction, default=d.min_iou, help=f"tracking min_iou (default {d.min_iou})")
    p.add_argument(
        "--track-max-lost",
        type=int_at_least(0),
        default=d.max_lost_frames,
        help=f"frames a lost track is remembered (default {d.max_lost_frames})",
    )
    p.add_argument(
        "--track-min-age",
        type=int_at_least(1),
        default=d.min_age,
        help=f"frames before a track id is published (default {d.min_age})",
    )


def tracker_config_from(args: argparse.Namespace) -> Any:
    """The TrackerConfig of ``--tracking``/``--track-*`` (None = tracking off)."""
    from bisenetformer_ros.tracking import TrackerConfig

    if getattr(args, "tracking", "on") == "off":
        return None
    if args.track_min_iou <= 0:
        raise ValueError("--track-min-iou must be > 0")
    return TrackerConfig(
        min_iou=float(args.track_min_iou), max_lost_frames=int(args.track_max_lost), min_age=int(args.track_min_age)
    )


# ----------------------------------------------------------------------------------------------------- outputs


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` may be written as a file: not a directory, its parent not a file. ValueError otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{option} '{p}' is a directory; give a file name")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{option} '{p}': '{parent}' is a file, not a directory")
    return p


def check_output_dir(path: str | Path, option: str) -> Path:
    """``path`` may be used as an output folder: not an existing file, no file among its parents."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} '{p}' is a file, not a folder")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{option} '{p}': '{parent}' is a file, not a folder")
    return p


class OutputDir:
    """An output folder whose files are tracked, so that a failed command can take back what it wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = not path.exists()
        self.written: list[Path] = []

    def ensure(self) -> Path:
        """Create the folder (when first needed, so a command that fails before writing leaves nothing)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def file(self, name: str) -> Path:
        """Path of an output file in the folder, remembered for :meth:`rollback`."""
        p = self.ensure() / name
        self.written.append(p)
        return p

    def rollback(self) -> None:
        """Remove what this command wrote: the whole folder if it created it, else the files it wrote."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for p in self.written:
            with suppress(OSError):
                p.unlink()


@contextmanager
def new_output_dir(path: str | Path, option: str) -> Iterator[OutputDir]:
    """An :class:`OutputDir` for ``path`` (checked first) that is rolled back if the body raises."""
    out = OutputDir(check_output_dir(path, option))
    try:
        yield out
    except BaseException:
        out.rollback()
        raise


def fail(message: str) -> NoReturn:
    """Exit with one error line (for code paths outside the main error handler)."""
    print(f"bisenetformer: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


# ----------------------------------------------------------------------------------------------------- models

DEFAULT_MODEL_HINT = "bash tools/train_default_model.sh"


def add_model_arguments(p: argparse.ArgumentParser | Any) -> None:
    """Options of every command that runs a model: which model, on which backend and device, at which size."""
    p.add_argument("--model", default=None, help="model file (.pt, .onnx or TensorRT engine); default: shipped model")
    p.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=BACKEND_CHOICES,
        help="auto (default): ONNX Runtime on the CPU (export cached), PyTorch on CUDA; see README 'Backends'",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument(
        "--calibration-images",
        default=None,
        help="--precision int8: folder of representative camera frames to calibrate on (cached); default: the "
        "synthetic training scenes for models of the synthetic label space",
    )
    add_input_size_option(p)


def resolve_model(model: str | None) -> Path:
    """The model file to use; the shipped default when none is given, with the way to make it if it is missing."""
    if model:
        path = Path(model).expanduser()
        if path.exists() and not path.is_file():
            raise ValueError(f"model '{path}' is not a file")
        from bisenetformer_ros.inference.factory import resolve_model_path

        return resolve_model_path(model)  # also resolves the names of fetched pretrained models
    from bisenetformer_ros.resources import DEFAULT_MODEL_NAME, default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no --model given and the shipped default model ({DEFAULT_MODEL_NAME}) is missing; produce it with "
            f"'{DEFAULT_MODEL_HINT}' or pass --model PATH"
        ) from None


def resolve_network_size(args: argparse.Namespace) -> Any:
    """The :class:`~bisenetformer_ros.model.network_size.NetworkSize` for ``--model``/``--input-size``, printed
    to stderr (stdout may be one JSON object) and kept in ``args.network_size`` for reports."""
    from bisenetformer_ros.model.network_size import resolve_network_size as resolve

    size = resolve(resolve_model(args.model), args.input_size)
    args.network_size = size
    print(f"network input: {size.describe()}", file=sys.stderr)
    return size


def segmenter_spec(args: argparse.Namespace, max_batch: int | None = None, mask_order: str | None = None) -> Any:
    """The :class:`~bisenetformer_ros.inference.spec.SegmenterSpec` of the options of :func:`add_model_arguments`
    (the model's own class table), at the network size of the one rule (:mod:`bisenetformer_ros.model.network_size`,
    printed to stderr)."""
    from bisenetformer_ros.inference.spec import SegmenterSpec

    size = resolve_network_size(args)
    return SegmenterSpec(
        model=resolve_model(args.model),
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        input_size=size.input_size,
        max_batch=max_batch,
        mask_order=mask_order,
        backend_options=calibration_options(args),
    )


def calibration_options(args: argparse.Namespace) -> dict[str, Any]:
    """Backend options of ``--calibration-images`` (only meaningful, and only passed, with ``--precision int8``)."""
    images = getattr(args, "calibration_images", None)
    return {"calibration_images": images} if images and args.precision == "int8" else {}


def build_segmenter(args: argparse.Namespace, max_batch: int | None = None, mask_order: str | None = None) -> Any:
    """A Segmenter for the options of :func:`add_model_arguments` (see :func:`segmenter_spec`)."""
    from bisenetformer_ros.inference.segmenter import Segmenter

    return Segmenter.from_spec(segmenter_spec(args, max_batch, mask_order))

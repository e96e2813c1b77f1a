"""The rosbags type store used by every bag tool: the standard ROS 2 types plus this package's own messages.

Why a type store of our own: bags must be readable and writable without a ROS install (training servers, CI), so
serialisation goes through the pure-Python ``rosbags`` library. It knows the standard ROS 2 message types; this
package's messages (``msg/*.msg``) are parsed from their ``.msg`` text at run time, which yields the same CDR layout
and the same RIHS01 type hash that ``rosidl`` computes on a ROS machine (a test checks both against ``rclpy``), so a
bag written here is indistinguishable from one written by ``ros2 bag record``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The type names live with the field mapping; re-exported here for the bag tools that spell them.
from bisenetformer_ros.message_fields import CAMERA_INFO as CAMERA_INFO
from bisenetformer_ros.message_fields import CLASS_TABLE as CLASS_TABLE
from bisenetformer_ros.message_fields import COMPRESSED_IMAGE as COMPRESSED_IMAGE
from bisenetformer_ros.message_fields import IMAGE as IMAGE
from bisenetformer_ros.message_fields import PANOPTIC_SEGMENT as PANOPTIC_SEGMENT
from bisenetformer_ros.message_fields import PANOPTIC_SEGMENTATION as PANOPTIC_SEGMENTATION
from bisenetformer_ros.resources import PACKAGE_NAME, SOURCE_ROOT

#: Full ROS 2 type names of this package's messages.
OWN_TYPES = (PANOPTIC_SEGMENT, PANOPTIC_SEGMENTATION, CLASS_TABLE)


def msg_dir_candidates() -> list[Path]:
    """Where ``msg/*.msg`` can be: the checkout, a pip/colcon share directory, any ament prefix."""
    out = [SOURCE_ROOT / "msg", Path(sys.prefix) / "share" / PACKAGE_NAME / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            out.append(Path(prefix) / "share" / PACKAGE_NAME / "msg")
    return out


def find_msg_dir() -> Path:
    """The first directory holding all of this package's ``.msg`` files."""
    names = [t.rsplit("/", 1)[1] + ".msg" for t in OWN_TYPES]
    candidates = msg_dir_candidates()
    for c in candidates:
        if all((c / n).is_file() for n in names):
            return c
    raise FileNotFoundError(
        f"cannot find this package's message definitions ({', '.join(names)}); looked in "
        + ", ".join(str(c) for c in candidates)
        + ". Run from a checkout, or install the package so that share/bisenetformer_ros/msg exists."
    )


def own_type_definitions(msg_dir: Path | None = None) -> dict[str, str]:
    """``{full type name: .msg text}`` of this package's messages."""
    directory = msg_dir or find_msg_dir()
    return {t: (directory / (t.rsplit("/", 1)[1] + ".msg")).read_text(encoding="utf-8") for t in OWN_TYPES}


def _base_store() -> Any:
    """Newest ROS 2 distribution store rosbags ships that matches the rclpy we test against (Kilted first)."""
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        store = getattr(Stores, name, None)
        if store is not None:
            return get_typestore(store)
    return get_typestore(Stores.LATEST)  # pragma: no cover - very old rosbags


@functools.lru_cache(maxsize=1)
def default_typestore() -> Any:
    """Shared type store with the standard ROS 2 types and ours registered (built once per process)."""
    return build_typestore()


def build_typestore(extra: Iterable[tuple[str, str]] = ()) -> Any:
    """A fresh type store: standard types, this package's messages, and ``extra`` ``(type name, .msg text)``.

    A fresh store is needed when a bag brings definitions of its own (unknown to us) that must not leak into the
    shared store used for writing.
    """
    from rosbags.typesys import get_types_from_msg

    store = _base_store()
    types: dict[str, Any] = {}
    for name, text in own_type_definitions().items():
        types.update(get_types_from_msg(text, name))
    for name, text in extra:
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def share_prefixes() -> list[Path]:
    """Install prefixes whose ``share/<pkg>/msg/*.msg`` may define message types (venv, ament prefixes)."""
    out = [Path(sys.prefix)]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and Path(prefix) not in out:
            out.append(Path(prefix))
    return out


def _referenced_types(typesdict: dict[str, Any]) -> set[str]:
    """Complex types that the fields of parsed definitions refer to."""
    from rosbags.interfaces import Nodetype

    found: set[str] = set()

    def walk(desc: Any) -> None:
        kind, arg = desc
        if kind == Nodetype.NAME:
            found.add(arg)
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            walk(arg[0])

    for _, fields in typesdict.values():
        for _, desc in fields:
            walk(desc)
    return found


def installed_definitions(msgtypes: Iterable[str], known: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(type, .msg text)`` for ``msgtypes`` and the types they use, from installed ``share/<pkg>/msg`` files.

    This is how a recorder learns types that neither rosbags nor this package knows (another team's messages):
    the same files ``ros2 bag record`` reads on a ROS install. Types without a file are left out; callers report them.
    """
    from rosbags.typesys import get_types_from_msg

    have = set(known)
    todo = [t for t in msgtypes if t not in have]
    out: list[tuple[str, str]] = []
    while todo:
        name = todo.pop()
        if name in have:
            continue
        have.add(name)
        parts = name.split("/")
        if len(parts) != 3:
            continue
        for prefix in share_prefixes():
            f = prefix / "share" / parts[0] / parts[1] / f"{parts[2]}.msg"
            if f.is_file():
                text = f.read_text(encoding="utf-8")
                out.append((name, text))
                todo.extend(t for t in _referenced_types(get_types_from_msg(text, name)) if t not in have)
                break
    return out


def type_hash(typestore: Any, msgtype: str) -> str:
    """RIHS01 hash of a type, as ``ros2 bag record`` stores it in ``type_description_hash``."""
    return str(typestore.hash_rihs01(msgtype))

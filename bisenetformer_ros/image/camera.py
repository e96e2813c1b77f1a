"""Camera-model arithmetic shared by the node (rclpy messages) and the bag tools (rosbags messages).

When outputs are published at a size other than the camera's (network resolution), the camera_info next to them
must describe that size, or RViz and downstream projection misplace every pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaledCamera:
    """K (3x3), P (3x4) row-major and ROI ``(x_offset, y_offset, width, height)`` for the new image size."""

    k: list[float]
    p: list[float]
    roi: tuple[int, int, int, int]
    sx: float
    sy: float


def scale_camera(
    k: Sequence[float],
    p: Sequence[float],
    roi: tuple[int, int, int, int],
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
) -> ScaledCamera:
    """Intrinsics for an image resized from ``src_size`` to ``dst_size`` (both ``(width, height)``).

    Pixel centres map as u' = (u + 0.5) * s - 0.5 (the resize convention of OpenCV and torch with
    align_corners=False), so fx, cx, Tx scale with sx and fy, cy with sy. A zero source size (unset camera_info)
    leaves everything unscaled.
    """
    sx = dst_size[0] / src_size[0] if src_size[0] else 1.0
    sy = dst_size[1] / src_size[1] if src_size[1] else 1.0
    k2 = [float(v) for v in k]
    p2 = [float(v) for v in p]
    if sx != 1.0 or sy != 1.0:
        k2[0] *= sx
        k2[2] = (k2[2] + 0.5) * sx - 0.5
        k2[4] *= sy
        k2[5] = (k2[5] + 0.5) * sy - 0.5
        p2[0] *= sx
        p2[2] = (p2[2] + 0.5) * sx - 0.5
        p2[3] *= sx
        p2[5] *= sy
        p2[6] = (p2[6] + 0.5) * sy - 0.5
    x, y, w, h = roi
    return ScaledCamera(k2, p2, (round(x * sx), round(y * sy), round(w * sx), round(h * sy)), sx, sy)

"""Camera intrinsics follow a resize: projecting a 3-D point with the scaled K lands on the resized pixel."""

from __future__ import annotations

import numpy as np
import pytest

from bisenetformer_ros.image.camera import scale_camera


def test_projection_is_consistent_with_pixel_centre_resize() -> None:
    k = [500.0, 0.0, 319.5, 0.0, 480.0, 239.5, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 319.5, -25.0, 0.0, 480.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    cam = scale_camera(k, p, (64, 32, 320, 240), (640, 480), (320, 120))
    point = np.array([0.3, -0.2, 2.0])
    u, v, _ = (np.array(k).reshape(3, 3) @ point) / point[2]
    u2, v2, _ = (np.array(cam.k).reshape(3, 3) @ point) / point[2]
    # Pixel centres: u' = (u + 0.5) * sx - 0.5.
    assert u2 == pytest.approx((u + 0.5) * 0.5 - 0.5)
    assert v2 == pytest.approx((v + 0.5) * 0.25 - 0.5)
    assert cam.p[3] == pytest.approx(-12.5)  # Tx = -fx * baseline scales with fx
    assert cam.roi == (32, 8, 160, 60)
    assert (cam.sx, cam.sy) == (0.5, 0.25)


def test_unset_camera_info_is_left_alone() -> None:
    k = [1.0] * 9
    cam = scale_camera(k, [2.0] * 12, (0, 0, 0, 0), (0, 0), (320, 240))
    assert cam.k == k and cam.p == [2.0] * 12 and (cam.sx, cam.sy) == (1.0, 1.0)

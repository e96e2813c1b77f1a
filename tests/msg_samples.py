"""Deterministic, fully populated instances of every message in msg/, shared by the test process and its peers.

Kept in one module so that a publisher in another process and the checking subscriber build identical messages.
"""

from __future__ import annotations

from typing import Any


def sample_messages() -> dict[str, Any]:
    """One message of each of the package's types, every field set to a non-default value."""
    import numpy as np
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image, RegionOfInterest
    from std_msgs.msg import ColorRGBA, Header

    from bisenetformer_ros.msg import ClassTable, PanopticSegment, PanopticSegmentation

    header = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789), frame_id="camera_optical_frame")
    ids = np.array([[1, 1, 2, 2, 0], [1, 1, 1, 2, 0], [0, 2, 2, 2, 0]], dtype="<u2")
    height, width = ids.shape
    image = Image(
        header=header, height=height, width=width, encoding="mono16", is_bigendian=0, step=width * 2, data=ids.tobytes()
    )
    # Float fields hold float32-representable values so that equality survives the float32 wire format.
    segments = []
    for seg_id, class_id, is_thing, score in ((1, 3, False, 0.875), (2, 11, True, 0.625)):
        ys, xs = np.nonzero(ids == seg_id)
        segments.append(
            PanopticSegment(
                id=seg_id,
                class_id=class_id,
                is_thing=is_thing,
                score=score,
                area=len(xs),
                bbox=RegionOfInterest(
                    x_offset=int(xs.min()),
                    y_offset=int(ys.min()),
                    width=int(xs.max() - xs.min() + 1),
                    height=int(ys.max() - ys.min() + 1),
                    do_rectify=False,
                ),
                centroid_x=float(np.float32(xs.mean())),
                centroid_y=float(np.float32(ys.mean())),
                track_id=7 if is_thing else 0,  # the tracking fields travel too (CDR layout checked with them)
                frames_seen=3 if is_thing else 0,
            )
        )
    panoptic = PanopticSegmentation(header=header, segment_ids=image, segments=segments)
    table = ClassTable(
        header=header,
        dataset="cityscapes",
        names=["road", "person", "car"],
        colors=[
            ColorRGBA(r=0.5, g=0.25, b=0.5, a=1.0),
            ColorRGBA(r=0.875, g=0.0625, b=0.25, a=1.0),
            ColorRGBA(r=0.0, g=0.0, b=0.5625, a=1.0),
        ],
        is_thing=[False, True, True],
        ignore_label=255,
    )
    return {"PanopticSegment": segments[1], "PanopticSegmentation": panoptic, "ClassTable": table}

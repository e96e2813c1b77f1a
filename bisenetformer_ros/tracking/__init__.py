"""Panoptic tracking: instance identities that hold across the frames of one camera (no ROS here).

:class:`PanopticTracker` gives every thing segment of a frame a track id that stays the same while the object stays
in view (and for a bounded number of frames after it disappears); stuff segments keep their class as identity.
The node runs one tracker per camera; ``bag evaluate`` and ``evaluate`` run the same tracker offline and score it
with the video metrics of :mod:`bisenetformer_ros.evaluation.video`.
"""

from bisenetformer_ros.tracking.tracker import (
    UNTRACKED,
    PanopticTracker,
    TrackerConfig,
    TrackInfo,
)

__all__ = ["UNTRACKED", "PanopticTracker", "TrackInfo", "TrackerConfig"]

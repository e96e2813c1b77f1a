"""Several cameras on one model: ``ros2 launch bisenetformer_ros multi_camera.launch.py cameras:=front,left,right``.

The node subscribes ``<camera>/image`` and ``<camera>/camera_info`` for each camera namespace (relative to the
node's namespace unless they start with '/') and publishes ``<camera>/semantic``, ``<camera>/overlay``, ... .
Defaults come from ``config/node/multi_camera.yaml``; ``cameras`` overrides its camera list. Camera drivers rarely
publish on exactly those names: ``image_topics`` and ``camera_info_topics`` (comma-separated, one per camera, in the
order of ``cameras``) remap them, e.g. ``image_topics:=/front_cam/image_raw,/left_cam/image_raw,/right_cam/image_raw``.
Also ``namespace``, ``use_sim_time``, ``log_level``, ``autostart`` and the model overrides.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "bisenetformer_ros"
OVERRIDES = ("model", "device", "backend", "precision")


def _flag(text):
    """A launch argument 'true'/'false' (any case, also 1/0) as a bool; anything else is an error."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def _list(context, name):
    return [c.strip() for c in LaunchConfiguration(name).perform(context).split(",") if c.strip()]


def _camera_remaps(cameras, image_topics, info_topics):
    """(from, to) remappings of each camera's image and camera_info topics (empty lists: none)."""
    remaps = []
    for what, topics in (("image", image_topics), ("camera_info", info_topics)):
        if not topics:
            continue
        if len(topics) != len(cameras):
            raise ValueError(f"{what} remaps need one topic per camera: {len(topics)} given for cameras {cameras}")
        remaps += [(f"{cam.rstrip('/')}/{what}", topic) for cam, topic in zip(cameras, topics, strict=True)]
    return remaps


def _node(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = {}
    for name in OVERRIDES:
        v = LaunchConfiguration(name).perform(context)
        if v:
            overrides[name] = v
    overrides["use_sim_time"] = _flag(LaunchConfiguration("use_sim_time").perform(context))
    overrides["autostart"] = _flag(LaunchConfiguration("autostart").perform(context))
    cameras = _list(context, "cameras")
    if cameras:
        overrides["cameras"] = cameras
        overrides["max_batch_size"] = max(1, len(cameras))
    image_topics, info_topics = _list(context, "image_topics"), _list(context, "camera_info_topics")
    if (image_topics or info_topics) and not cameras:
        raise ValueError("image_topics / camera_info_topics need the cameras argument (their order)")
    return [
        Node(
            package=PACKAGE,
            executable="bisenetformer_node",
            name="bisenetformer",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
            remappings=_camera_remaps(cameras, image_topics, info_topics),
        )
    ]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "node", "multi_camera.yaml"),
                description="ROS parameter file for the node",
            ),
            DeclareLaunchArgument(
                "cameras", default_value="", description="comma-separated camera namespaces ('' = from params_file)"
            ),
            DeclareLaunchArgument(
                "image_topics",
                default_value="",
                description="comma-separated image topic per camera (order of cameras; '' = <camera>/image)",
            ),
            DeclareLaunchArgument(
                "camera_info_topics",
                default_value="",
                description="comma-separated camera_info topic per camera ('' = <camera>/camera_info)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
            DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="configure + activate at start (a failed configure exits with code 2); false = wait "
                "for a lifecycle manager",
            ),
            DeclareLaunchArgument("model", default_value="", description="model file ('' = from params_file)"),
            DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda[:N]"),
            DeclareLaunchArgument("backend", default_value="", description="auto | torch | onnxruntime | tensorrt"),
            DeclareLaunchArgument("precision", default_value="", description="fp32 | fp16 | bf16 | int8"),
            OpaqueFunction(function=_node),
        ]
    )

"""Tuning session: the node plus RViz showing the camera, the overlay and the coloured panoptic image.

``ros2 launch bisenetformer_ros tuning.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info``

Outputs are published eagerly (not lazily) so RViz shows them immediately (reliable, the node's default). RViz is
started here only: ``package.xml`` does not depend on rviz2, so a headless robot never installs it; install
``ros-$ROS_DISTRO-rviz2`` on the machine you tune from. Thresholds, overlay alpha,
enabled outputs and the task are runtime-tunable: change them with ``ros2 param set /bisenetformer/bisenetformer
overlay_alpha 0.7`` (or rqt_reconfigure) and watch the next frame. Set RViz's fixed frame to your camera's frame.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "bisenetformer_ros"


def _flag(text):
    """A launch argument 'true'/'false' (any case, also 1/0) as a bool; anything else is an error."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def _nodes(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = {"lazy": False, "output_qos": "reliable"}
    overrides["use_sim_time"] = _flag(LaunchConfiguration("use_sim_time").perform(context))
    overrides["autostart"] = _flag(LaunchConfiguration("autostart").perform(context))
    model = LaunchConfiguration("model").perform(context)
    if model:
        overrides["model"] = model
    device = LaunchConfiguration("device").perform(context)
    if device:
        overrides["device"] = device
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
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            output="screen",
            arguments=["-d", os.path.join(share, "config", "rviz", "bisenetformer.rviz")],
            parameters=[{"use_sim_time": overrides["use_sim_time"]}],
        ),
    ]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "node", "default.yaml"),
                description="ROS parameter file for the node (see config/node/)",
            ),
            DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
            DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="camera info topic"),
            DeclareLaunchArgument(
                "namespace",
                default_value="bisenetformer",
                description="namespace of the node (the RViz config shows /bisenetformer/...)",
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
            DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
            DeclareLaunchArgument(
                "autostart", default_value="true", description="configure + activate at start (false = lifecycle)"
            ),
            DeclareLaunchArgument("model", default_value="", description="model file ('' = from params_file)"),
            DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda[:N]"),
            OpaqueFunction(function=_nodes),
        ]
    )

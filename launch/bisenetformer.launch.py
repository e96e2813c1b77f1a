"""Single camera: ``ros2 launch bisenetformer_ros bisenetformer.launch.py image:=/camera/image_raw``.

Arguments (``ros2 launch ... --show-args``): the parameter file (default ``config/node/default.yaml``), the camera
topics to remap, the node's ``namespace`` and name, the standard ``use_sim_time`` / ``log_level`` / ``autostart``,
and a few common overrides (model, device, backend, precision, input_transport); empty overrides leave the parameter
file's value in force. With ``autostart:=true`` (default) a node that cannot configure exits with code 2, so
``respawn`` or an ``OnProcessExit`` handler can act on it; ``autostart:=false`` leaves it to a lifecycle manager.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "bisenetformer_ros"
# Launch arguments that override node parameters of the same name when not empty.
OVERRIDES = ("model", "device", "backend", "precision", "input_transport")


def _flag(text):
    """A launch argument 'true'/'false' (any case, also 1/0) as a bool; anything else is an error."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def _node(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name in (*OVERRIDES, "params_file")}
    overrides = {name: value[name] for name in OVERRIDES if value[name]}
    overrides["use_sim_time"] = _flag(LaunchConfiguration("use_sim_time").perform(context))
    overrides["autostart"] = _flag(LaunchConfiguration("autostart").perform(context))
    transport = value["input_transport"] or "raw"
    image_in = "image/compressed" if transport == "compressed" else "image"
    image_topic = LaunchConfiguration("image").perform(context)
    if transport == "compressed" and not image_topic.endswith("/compressed"):
        image_topic = image_topic.rstrip("/") + "/compressed"
    return [
        Node(
            package=PACKAGE,
            executable="bisenetformer_node",
            name=LaunchConfiguration("node_name"),
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[value["params_file"], overrides],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
            remappings=[
                (image_in, image_topic),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
        )
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
            DeclareLaunchArgument("namespace", default_value="bisenetformer", description="namespace of the outputs"),
            DeclareLaunchArgument("node_name", default_value="bisenetformer", description="node name"),
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
            DeclareLaunchArgument("input_transport", default_value="", description="raw | compressed"),
            OpaqueFunction(function=_node),
        ]
    )

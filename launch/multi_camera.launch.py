"""Several cameras on one model: ``ros2 launch bisenetformer_ros multi_camera.launch.py cameras:=front,left,right``.

The node subscribes ``<camera>/image`` and ``<camera>/camera_info`` for each camera namespace (relative to the
node's namespace unless they start with '/') and publishes ``<camera>/semantic``, ``<camera>/overlay``, ... .
Defaults come from ``config/node/multi_camera.yaml``; ``cameras`` overrides its camera list.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "bisenetformer_ros"
OVERRIDES = ("model", "device", "backend", "precision")


def _node(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = {}
    for name in OVERRIDES:
        v = LaunchConfiguration(name).perform(context)
        if v:
            overrides[name] = v
    cameras = [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",") if c.strip()]
    if cameras:
        overrides["cameras"] = cameras
        overrides["max_batch_size"] = max(1, len(cameras))
    return [
        Node(
            package=PACKAGE,
            executable="bisenetformer_node",
            name="bisenetformer",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
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
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument("model", default_value="", description="model file ('' = from params_file)"),
            DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda[:N]"),
            DeclareLaunchArgument("backend", default_value="", description="torch | onnxruntime | tensorrt"),
            DeclareLaunchArgument("precision", default_value="", description="fp32 | fp16 | bf16 | int8"),
            OpaqueFunction(function=_node),
        ]
    )

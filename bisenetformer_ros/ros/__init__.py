"""The ROS 2 adapter: ``bisenetformer_node``'s console script (node.py) and node class (segmentation_node.py), which
wires together its camera endpoints (camera_io.py), parameters in ROS (node_parameters.py) over the parameter table
(parameters.py), QoS profiles and incompatible-QoS reporting (qos.py, qos_watch.py), message building (messages.py)
and pipeline construction (pipeline.py).

The decisions the node takes are plain Python here, tested without DDS: frame scheduling (scheduler.py), the health
rules of /diagnostics (health.py) over the statistics (stats.py), and per-camera tracking (tracks.py).

The only part of the package that imports rclpy; everything it runs (model, backends, image conversion, rendering)
lives in the ROS-free core so that offline tools produce identical results.
"""

"""The ROS 2 adapter: ``bisenetformer_node`` (node.py), its parameter table (parameters.py), message building
(messages.py), QoS (qos.py), diagnostics statistics (stats.py) and pipeline construction (pipeline.py).

The only part of the package that imports rclpy; everything it runs (model, backends, image conversion, rendering)
lives in the ROS-free core so that offline tools produce identical results.
"""

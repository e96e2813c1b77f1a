"""The test suite as a package, so that its shared helpers are imported as ``tests.<module>`` (no ``sys.path``
edits): :mod:`tests.inference_models` (random-weight model files), :mod:`tests.msg_samples` (one filled message of
every own type), :mod:`tests.ros_node_harness` (node processes and a client for the ROS tests) and
:mod:`tests.ros_peer_publisher` (a peer publisher process)."""

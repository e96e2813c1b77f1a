"""Peer process for the DDS tests: publishes every sample message on /foundation/<Type> until killed.

Run as ``python -m tests.ros_peer_publisher`` from the repository root; the checking test subscribes from its own
process, so the messages cross a real process boundary over Fast DDS.
"""

from __future__ import annotations

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from tests.msg_samples import sample_messages


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("foundation_peer_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    samples = sample_messages()
    pubs = {name: node.create_publisher(type(msg), f"/foundation/{name}", qos) for name, msg in samples.items()}

    def tick() -> None:
        for name, pub in pubs.items():
            pub.publish(samples[name])

    node.create_timer(0.1, tick)
    print("publishing", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

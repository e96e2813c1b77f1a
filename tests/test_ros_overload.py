"""Overload: 4 cameras at 30 Hz for 60 s against a deliberately slow backend (``debug.inference_delay_ms``).

The node must keep latency bounded by dropping instead of queueing: every output is at most ``max_age`` plus one
pass of the pipeline old, memory stays flat, and the drops are visible in /diagnostics. The bound is computed from
the node's own reported stage times (no fixed timing constant), with a small allowance for DDS delivery.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    image_msg,
    rss_bytes,
    running_node,
    save_tiny_model,
)

CAMERAS = ["cam0", "cam1", "cam2", "cam3"]
NODE_NS = "/overload"
RATE_HZ = 30.0
DURATION_S = 60.0
WARMUP_S = 5.0
DELAY_MS = 120.0
MAX_AGE = 0.1
H, W = 120, 160
TRANSPORT_ALLOWANCE_S = 0.1


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("overload")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "cameras": CAMERAS,
        "max_batch_size": 4,
        "input_qos": "sensor_data",
        "output_qos": "sensor_data",
        "max_age": MAX_AGE,
        "max_age_reference": "stamp",  # same machine, same clock: age from the camera stamp
        "debug.inference_delay_ms": DELAY_MS,
        "diagnostics.period": 0.5,
        # The stage maxima behind the bound must cover the whole run, not only its last seconds: a load spike early
        # in the run would otherwise be in the ages but not in the bound.
        "diagnostics.window": 2 * (WARMUP_S + DURATION_S),
        "diagnostics.warn_fps": 29.0,
    }
    with running_node(
        ros_env,
        tmp,
        params,
        namespace=NODE_NS,
        client_name="overload_test_client",
        wait_topics=[f"{NODE_NS}/{CAMERAS[0]}/class_info"],
    ) as running:
        yield running


def test_four_cameras_at_30hz_against_a_slow_backend(setup) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node, client = setup
    pubs = [client.publisher(Image, f"{NODE_NS}/{c}/image", qos_profile_sensor_data) for c in CAMERAS]
    ages: dict[str, list[float]] = {c: [] for c in CAMERAS}
    clock = client.node.get_clock()

    def on_output(cam: str):
        # The age is taken at the node's publish (the DDS writer's source timestamp), not when this busy test
        # process gets round to the callback: the claim is about the node, and on a loaded 2-core machine the
        # client's own executor can lag by tens of milliseconds.
        def cb(msg: Image, info: dict) -> None:
            st = msg.header.stamp
            sent_ns = int(info.get("source_timestamp") or 0) or clock.now().nanoseconds
            ages[cam].append((sent_ns - (st.sec * 1_000_000_000 + st.nanosec)) / 1e9)

        return cb

    for c in CAMERAS:
        client.node.create_subscription(Image, f"{NODE_NS}/{c}/semantic", on_output(c), qos_profile_sensor_data)
    assert client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs), 20)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(8)]
    period = 1.0 / RATE_HZ
    start = time.monotonic()
    next_t = start
    sent = 0
    rss_start = rss_end = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= WARMUP_S + DURATION_S:
            break
        if not rss_start and elapsed >= WARMUP_S:
            rss_start = rss_bytes(node.pid)  # after warm-up: allocator pools and caches have reached steady state
        if now < next_t:
            time.sleep(min(next_t - now, 0.005))
            continue
        for i, pub in enumerate(pubs):
            pub.publish(
                image_msg(frames[(sent + i) % len(frames)], "rgb8", client.now_stamp(), f"{CAMERAS[i]}_optical")
            )
        sent += 1
        next_t += period
        if next_t < time.monotonic() - period:  # this process fell behind: do not burst to catch up
            next_t = time.monotonic()
    rss_end = rss_bytes(node.pid)
    time.sleep(1.0)  # last diagnostics
    assert node.alive()
    actual_rate = sent / (WARMUP_S + DURATION_S)

    # 1) memory is flat
    growth = (rss_end - rss_start) / rss_start
    # 2) every output is fresh: max_age + one pass of the pipeline for a full batch (+ DDS delivery)
    pass_s = 0.0
    total_drops = 0
    for c in CAMERAS:
        name = f"camera {NODE_NS}/{c}/image"
        level, message, v = client.diagnostics(name)

        def mx(stage: str, v=v) -> float:
            return float(v.get(f"latency.{stage}.max_ms", 0.0)) / 1000.0

        batch = len(CAMERAS)
        pass_s = max(
            pass_s,
            batch * mx("decode")
            + mx("preprocess")
            + mx("inference")
            + mx("postprocess")
            + batch * (mx("render") + mx("publish")),
        )
        drops = int(v["dropped_superseded"]) + int(v["dropped_stale"])
        total_drops += drops
        # 3) drops are reported, and the rate warning fires (warn_fps is above what the slow device can do)
        assert drops > 0, (c, v)
        assert level == 1 and "fps <" in message, (c, level, message)
        assert int(v["processed"]) > 0
    all_ages = [a for c in CAMERAS for a in ages[c]]
    bound = MAX_AGE + pass_s + TRANSPORT_ALLOWANCE_S
    worst = max(all_ages)
    print(
        f"\noverload: {sent} frames/camera at {actual_rate:.1f} Hz, outputs {[len(ages[c]) for c in CAMERAS]}, "
        f"drops {total_drops}, age p50 {np.median(all_ages) * 1000:.0f} ms max {worst * 1000:.0f} ms "
        f"(bound {bound * 1000:.0f} ms = max_age {MAX_AGE * 1000:.0f} + pass {pass_s * 1000:.0f} + "
        f"{TRANSPORT_ALLOWANCE_S * 1000:.0f}), RSS {rss_start / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB "
        f"({growth * 100:+.2f} %)"
    )
    assert actual_rate > 0.8 * RATE_HZ, f"the test itself could only publish at {actual_rate:.1f} Hz"
    assert all(len(ages[c]) > 20 for c in CAMERAS)
    assert growth <= 0.05, f"RSS grew {growth * 100:.1f} %"
    assert worst <= bound, f"oldest output {worst * 1000:.0f} ms > bound {bound * 1000:.0f} ms"

"""``bisenetformer demo``: the whole system end to end on one machine, with nothing but the package installed.

1. make (or reuse from the cache) a synthetic camera bag with ground truth, or take the user's ``--bag``;
2. start the real node (``bisenetformer_node`` in its own process, shipped model, CPU) in a private ROS domain;
3. play the bag into it over DDS in lock-step (each frame waits for the node's answer, so a slow CPU loses nothing)
   while recording the node's outputs into a bag;
4. score the recorded outputs against the ground truth, write the report and print the headline figures.

Lives under ``ros/`` because it drives rclpy; bag making and scoring are the ROS-free modules in
:mod:`bisenetformer_ros.bags`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisenetformer_ros.atomic_io import atomic_dir
from bisenetformer_ros.bags.bagio import BagReader, BagWriter
from bisenetformer_ros.bags.typestore import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    PANOPTIC_SEGMENTATION,
    own_type_definitions,
)
from bisenetformer_ros.model.network_size import model_file_network_size
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUT_SPECS,
    RECORDED_OUTPUTS,
    absolute_topic,
)

#: Namespace of the node in the demo; its outputs are <ns>/semantic, <ns>/panoptic, ...
NODE_NAMESPACE = "/bisenetformer"
NODE_NAME = "bisenetformer"
#: Node outputs the demo records (everything a user would look at in RViz, plus the node's own diagnostics).
OUTPUTS = (*(OUTPUT_SPECS[n].topic for n in RECORDED_OUTPUTS), *OUTPUT_CAMERA_INFO_TOPICS, CLASS_INFO_TOPIC)


def node_topic(name: str) -> str:
    """The demo node's topic of catalogue output ``name`` (or of a latched topic such as class_info)."""
    return absolute_topic(NODE_NAMESPACE, OUTPUT_SPECS[name].topic if name in OUTPUT_SPECS else name)


@dataclass
class DemoConfig:
    bag: str | None = None
    model: str | None = None
    out: str = "bisenetformer_demo"
    frames: int | None = None
    quick: bool = False
    image_topic: str | None = None
    gt_semantic_topic: str | None = None
    gt_panoptic_topic: str | None = None
    width: int | None = None
    height: int | None = None
    domain_id: int | None = None
    node_start_timeout: float = 120.0
    frame_timeout: float = 30.0
    cache_dir: str | None = None
    node_args: list[str] = field(default_factory=list)
    progress: bool = True


def cache_dir(cfg: DemoConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bisenetformer" / "demo"


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


#: The shipped tracking sequence: ``bag make-synthetic --sequence --seed 2`` (objects cross, hide each other, leave
#: and come back within the demo's 60 frames); the same settings always give the same bag.
SEQUENCE_SEED = 2


def synthetic_settings(cfg: DemoConfig) -> dict[str, Any]:
    """Bag size of the full demo and of ``--quick`` (sized to finish in minutes on 2 CPU cores)."""
    if cfg.quick:
        s = {"width": 256, "height": 192, "frames": 8, "rate": 10.0}
    else:
        s = {"width": 384, "height": 288, "frames": 60, "rate": 10.0}
    if cfg.frames:
        s["frames"] = cfg.frames
    if cfg.width:
        s["width"] = cfg.width
    if cfg.height:
        s["height"] = cfg.height
    return s


def ensure_synthetic_bag(cfg: DemoConfig) -> Path:
    """The cached synthetic camera bag for these settings, made on first use (validated before reuse)."""
    from bisenetformer_ros.bags.synthetic_bag import SyntheticBagConfig, make_synthetic_bag

    s = synthetic_settings(cfg)
    # The message definitions are part of the name: a bag cached with older ground-truth messages is not reused.
    defs = hashlib.sha256("".join(own_type_definitions().values()).encode()).hexdigest()[:8]
    name = f"synthetic_seq{SEQUENCE_SEED}_{s['width']}x{s['height']}_{s['frames']}f_{s['rate']:g}hz_{defs}"
    path = cache_dir(cfg) / name
    if path.exists():
        try:
            with BagReader(path) as r:
                if r.topics.get("/camera/image") and r.topics["/camera/image"].count == s["frames"]:
                    _log(f"reusing cached synthetic bag {path}")
                    return path
        except Exception as exc:  # a broken cache entry is rebuilt, not trusted
            _log(f"cached bag {path} is unusable ({exc}); rebuilding it")
        shutil.rmtree(path, ignore_errors=True)
    _log(f"making a synthetic camera bag ({s['frames']} frames {s['width']}x{s['height']}) at {path}")
    with atomic_dir(path) as tmp:  # a half-written bag never appears under the cache name
        make_synthetic_bag(
            tmp,
            SyntheticBagConfig(
                width=s["width"],
                height=s["height"],
                frames=s["frames"],
                rate=s["rate"],
                seed=SEQUENCE_SEED,
                sequence=True,
            ),
            progress=cfg.progress,
        )
    return path


def _pick_topics(cfg: DemoConfig, bag: Path) -> tuple[str, str | None, str | None, str | None]:
    """(image, camera_info, gt semantic, gt panoptic) topics of the input bag."""
    with BagReader(bag) as r:
        topics = r.topics
        image = cfg.image_topic
        if image is None:
            images = sorted(t for t, s in topics.items() if s.msgtype in (IMAGE, COMPRESSED_IMAGE) and "/gt" not in t)
            if not images:
                raise ValueError(f"bag {bag} has no image topic; pass --image-topic")
            image = "/camera/image" if "/camera/image" in images else images[0]
        r.require_topic(image, [IMAGE, COMPRESSED_IMAGE], what="image topic")
        ns = image.rsplit("/", 1)[0]
        info = (
            f"{ns}/camera_info"
            if topics.get(f"{ns}/camera_info", None) and topics[f"{ns}/camera_info"].msgtype == CAMERA_INFO
            else None
        )
        gt_sem, gt_pan = cfg.gt_semantic_topic, cfg.gt_panoptic_topic
        if cfg.bag is None and not (gt_sem or gt_pan):  # our synthetic bag: panoptic GT gives mIoU and PQ
            gt_pan = f"{ns}/gt/panoptic" if f"{ns}/gt/panoptic" in topics else None
            gt_sem = None if gt_pan else (f"{ns}/gt/semantic" if f"{ns}/gt/semantic" in topics else None)
        if gt_sem:
            r.require_topic(gt_sem, [IMAGE], what="ground-truth topic")
        if gt_pan:
            r.require_topic(gt_pan, [PANOPTIC_SEGMENTATION], what="ground-truth topic")
    return image, info, gt_sem, gt_pan


def _private_domain(cfg: DemoConfig) -> int:
    if cfg.domain_id is not None:
        return cfg.domain_id
    # Ids above the ones tests and common setups use; a clash only mixes traffic if both use the same topics.
    return random.Random(os.getpid() ^ time.time_ns()).randint(150, 229)


def node_error_line(log_path: Path) -> str:
    """The node's own reason for failing, from its log: the last error line (e.g. ``configure failed: ...``)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "[ERROR]" in line or "error:" in line or "invalid parameter" in line:
            return line.split("]: ", 1)[-1].strip()
    return lines[-1].strip() if lines else ""


def start_node(
    model: Path, image_topic: str, info_topic: str | None, env: dict[str, str], log_path: Path, extra: list[str]
) -> subprocess.Popen:
    exe = shutil.which("bisenetformer_node", path=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    cmd = [exe] if exe else [sys.executable, "-m", "bisenetformer_ros.ros.node"]
    cmd += [
        "--ros-args",
        "-r",
        f"__ns:={NODE_NAMESPACE}",
        "-r",
        f"__node:={NODE_NAME}",
        "-r",
        f"image:={image_topic}",
        "-p",
        f"model:={model}",
        "-p",
        "device:=cpu",
        "-p",
        "input_qos:=reliable",
        "-p",
        "output_qos:=reliable",
    ]
    if info_topic:
        cmd += ["-r", f"camera_info:={info_topic}"]
    cmd += extra
    log = open(log_path, "w")  # noqa: SIM115 - closed when the process is reaped (stop_node)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc._demo_log = log  # type: ignore[attr-defined]
    return proc


def stop_node(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT (clean lifecycle shutdown), then SIGTERM, then SIGKILL - only the node we started."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
            try:
                proc.send_signal(sig)
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            proc.kill()
            proc.wait(5)
    log = getattr(proc, "_demo_log", None)
    if log is not None:
        log.close()
    return int(proc.returncode if proc.returncode is not None else -1)


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns the report dict (with paths and timings added)."""
    from bisenetformer_ros.bags.score_outputs import OutputScoreConfig, score_output_bag

    t_start = time.perf_counter()
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, bag = _demo_model_and_bag(cfg)
    image_topic, info_topic, gt_sem, gt_pan = _pick_topics(cfg, bag)
    n_frames = _frames_to_play(cfg, bag, image_topic)
    domain = _private_domain(cfg)
    env = _node_environment(domain)
    node_log = out / "node.log"
    out_bag = out / "node_outputs"
    if out_bag.exists():
        shutil.rmtree(out_bag) if (out_bag / "metadata.yaml").exists() else None
    _log(f"starting bisenetformer_node (model {model.name}, CPU, ROS_DOMAIN_ID={domain}); log: {node_log}")
    network = _network_description(model, cfg.node_args)
    _log(f"network input: {network}")
    node = start_node(model, image_topic, info_topic, env, node_log, list(cfg.node_args))
    output_topics = [absolute_topic(NODE_NAMESPACE, t) for t in OUTPUTS] + ["/diagnostics"]
    played_topics = [image_topic] + ([info_topic] if info_topic else [])
    try:
        stats, t_play = _play_and_record(
            cfg, domain, bag, out_bag, output_topics, played_topics, image_topic, n_frames, node, node_log, t_start
        )
    finally:
        code = stop_node(node)
        _log(f"node stopped (exit code {code})")

    assert stats is not None
    latency = _end_to_end_latency(stats)
    warnings = []
    if stats.sync_timeouts:
        warnings.append(f"the node did not answer {stats.sync_timeouts} frame(s) within {cfg.frame_timeout:.0f} s")
    report = score_output_bag(
        OutputScoreConfig(
            input_bag=str(bag),
            output_bag=str(out_bag),
            image_topic=image_topic,
            semantic_topic=node_topic("semantic"),
            panoptic_topic=node_topic("panoptic"),
            overlay_topic=node_topic("overlay"),
            panoptic_color_topic=node_topic("panoptic_color"),
            class_info_topic=node_topic(CLASS_INFO_TOPIC),
            gt_semantic_topic=gt_sem,
            gt_panoptic_topic=gt_pan,
            out_dir=str(out / "report"),
            title="BiSeNetFormer demo: the node over DDS on a camera bag",
            latency_ms=latency,
            wall_time_s=t_play,
            source={
                "model": str(model),
                "node": "bisenetformer_node (separate process, CPU)",
                "ros_domain_id": domain,
                "playback": "lock-step (next frame after the node's answer)",
                "frames_played": len(stats.publish_wall),
                "network_input": network,
            },
            warnings=warnings,
            latency_note="End-to-end latency per frame: from publishing the image to receiving the node's semantic "
            "output (DDS transport both ways, decode, inference, post-processing, publishing). Throughput is frames "
            "answered per second of lock-step playback, i.e. one frame in flight at a time.",
        )
    )
    report["paths"] = {
        "input_bag": str(bag),
        "output_bag": str(out_bag),
        "report_html": str(out / "report" / "report.html"),
        "report_json": str(out / "report" / "report.json"),
        "overview_png": str(out / "report" / "overview.png"),
        "node_log": str(node_log),
    }
    report["demo_wall_time_s"] = time.perf_counter() - t_start
    return report


def _demo_model_and_bag(cfg: DemoConfig) -> tuple[Path, Path]:
    """The model file (default: the shipped one) and the bag to play (default: the cached synthetic bag)."""
    from bisenetformer_ros.resources import default_model_path

    model = Path(cfg.model).resolve() if cfg.model else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"model {model} does not exist")
    if cfg.bag:
        bag = Path(cfg.bag).resolve()
        if not bag.exists():
            raise FileNotFoundError(f"bag {bag} does not exist")
    else:
        bag = ensure_synthetic_bag(cfg)
    return model, bag


def _frames_to_play(cfg: DemoConfig, bag: Path, image_topic: str) -> int:
    """Frames the playback waits for: all images of the bag, or ``--frames`` of a user's bag (a synthetic bag is
    already made with that many)."""
    with BagReader(bag) as r:
        n_frames = r.topics[image_topic].count
    if cfg.frames and cfg.bag:
        n_frames = min(n_frames, cfg.frames)
    return n_frames


def _node_environment(domain: int) -> dict[str, str]:
    """Environment of the node process; this process (player and recorder) gets the same DDS settings."""
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    )
    env.pop("ROS_LOCALHOST_ONLY", None)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # Reliable QoS with 300 kB+ images over Fast DDS's default UDP transport loses a fragment now and then and waits
    # for the 3 s heartbeat to resend it (measured: p99 3.1 s instead of 88 ms). LARGE_DATA uses shared memory / TCP
    # for big samples; set before this process's rclpy starts (the player and recorder) and for the node.
    for e in (env, os.environ):
        e.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    return env


def _network_description(model: Path, node_args: list[str]) -> str:
    """The network input size the node will use, for the log and the report."""
    if any(a.startswith(("input_short_side", "input_height", "input_width")) for a in node_args):
        return "as set with --node-arg"
    return model_file_network_size(model).describe()  # the node applies the one rule itself; say which size


def _play_and_record(
    cfg: DemoConfig,
    domain: int,
    bag: Path,
    out_bag: Path,
    output_topics: list[str],
    played_topics: list[str],
    image_topic: str,
    n_frames: int,
    node: subprocess.Popen,
    node_log: Path,
    t_start: float,
) -> tuple[Any, float]:
    """Record the node's outputs while the bag is played into it in lock-step; returns the player's statistics
    and the playback wall time."""
    from bisenetformer_ros.ros.bag_transport import BagPlayer, BagRecorder, RosSession

    with RosSession("bisenetformer_demo", domain, handle_signals=True) as session:
        writer = BagWriter(out_bag, storage="sqlite3", overwrite=True).open()
        recorder = BagRecorder(session.node, writer, output_topics)
        try:
            recorder.start()
            with BagReader(bag) as reader:
                # The player's sync subscription needs the node's output to exist: wait for the node first.
                _wait_for_node(session, recorder, node, node_log, cfg.node_start_timeout)
                _log(f"node is up after {time.perf_counter() - t_start:.1f} s; recording its outputs to {out_bag}")
                player = BagPlayer(
                    session.node,
                    reader,
                    topics=played_topics,
                    rate=0.0,
                    sync_topic=node_topic("semantic"),
                    sync_source=image_topic,
                    sync_timeout=cfg.frame_timeout,
                )
                player.spin_in_background()
                try:
                    if not player.wait_for_subscribers(1, cfg.node_start_timeout, [image_topic]):
                        raise RuntimeError(f"the node never subscribed to {image_topic}:\n{_tail(node_log)}")
                    _log(f"playing {n_frames} frames into the node over DDS (lock-step)")
                    stats, t_play = _play_frames(player, session.stop, n_frames, cfg.progress)
                    _wait_until_quiet(recorder, session.stop)
                finally:
                    player.shutdown()
        finally:
            recorder.stop()
            writer.close()
    return stats, t_play


def _wait_for_node(session: Any, recorder: Any, node: subprocess.Popen, node_log: Path, timeout: float) -> None:
    """Spin until the node advertises every recorded output; fail at once when the node process exits."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=session.context)
    ex.add_node(session.node)
    deadline = time.monotonic() + timeout
    while recorder.missing:
        # A node that cannot configure exits at once (exit_on_autostart_failure): seen within
        # one spin, not after the start-up timeout.
        if node.poll() is not None:
            raise RuntimeError(
                f"the node exited (code {node.returncode}) while starting: "
                f"{node_error_line(node_log) or 'no error in its log'} (log: {node_log})"
            )
        if time.monotonic() > deadline or session.stop.is_set():
            raise RuntimeError(
                f"the node did not advertise {', '.join(recorder.missing)} within {timeout:.0f} s (log: {node_log})"
            )
        ex.spin_once(timeout_sec=0.1)
    ex.remove_node(session.node)
    ex.shutdown()


def _play_frames(player: Any, interrupted: threading.Event, n_frames: int, show_progress: bool) -> tuple[Any, float]:
    """Play until ``n_frames`` frames were published (or Ctrl-C); returns the player's statistics and wall time."""
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=n_frames, unit="frame", desc="demo")
    limit = threading.Event()

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.n = len(player.stats.publish_wall)
            bar.refresh()
        if len(player.stats.publish_wall) >= n_frames:
            limit.set()

    stop = _either(interrupted, limit)
    t0 = time.perf_counter()
    stats = player.play(stop, progress)
    t_play = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return stats, t_play


def _end_to_end_latency(stats: Any) -> dict[int, dict[str, float]]:
    """Per frame stamp: publishing the image to receiving the node's answer, in ms (answered frames only)."""
    return {
        stamp: {"end_to_end": (stats.response_wall[stamp] - t_pub) * 1000.0}
        for stamp, t_pub in stats.publish_wall.items()
        if stamp in stats.response_wall
    }


#: Recorded topics that a node publishes on a timer, whatever the input: they never fall quiet.
PERIODIC_TOPICS = frozenset({"/diagnostics"})


def _wait_until_quiet(recorder: Any, stop: threading.Event, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """After playback, wait until the frame outputs other than the sync topic have stopped arriving.

    Only per-frame outputs count: ``/diagnostics`` is published every second or so, and counting it kept the demo
    waiting for ever on an idle machine. ``limit_s`` bounds the wait in any case and Ctrl-C (``stop``) ends it.
    """

    def frame_outputs() -> int:
        return sum(t.count for name, t in list(recorder.recorded.items()) if name not in PERIODIC_TOPICS)

    start = quiet_since = time.monotonic()
    last = frame_outputs()
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() - start < limit_s and not stop.is_set():
        time.sleep(0.1)
        now = frame_outputs()
        if now != last:
            last, quiet_since = now, time.monotonic()


class _either:  # behaves like a threading.Event for BagPlayer.play
    """An Event view that is set when any of its events is set (Ctrl-C or enough frames)."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

"""Play rosbag2 bags into a live ROS graph and record live topics into bags, with rclpy and rosbags.

For machines without ``ros2 bag`` (pip-only installs, CI, the demo). Bytes move unchanged in both directions: the
player publishes the CDR bytes stored in the bag (``publish`` of serialised data), the recorder stores the CDR bytes
received from DDS (raw subscriptions), so nothing is re-encoded on the way. QoS follows ``ros2 bag``'s rules: the
recorder requests what all publishers of a topic offer (reliable / transient-local only when every publisher offers
it) and stores the offered profiles; the player offers the recorded profile when all recorded publishers agree.

This module lives under ``ros/`` because it imports rclpy; the bag format code it uses is ROS-free
(:mod:`bisenetformer_ros.bags`).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from bisenetformer_ros.bags.bagio import INFINITE_NS, BagReader, BagWriter, QosSpec
from bisenetformer_ros.bags.typestore import build_typestore, installed_definitions

#: Topics that every ROS node creates; recorded only when asked for by name.
GRAPH_NOISE = ("/rosout", "/parameter_events")


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (clear error when its Python package is not installed)."""
    try:
        pkg, kind, name = msgtype.split("/")
    except ValueError:
        raise ValueError(f"'{msgtype}' is not a ROS 2 message type name (expected pkg/msg/Name)") from None
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"message type {msgtype} is not available to rclpy here; install its interface package "
            f"(e.g. ros-<distro>-{pkg.replace('_', '-')}) or source the workspace that builds it"
        ) from None


# -- QoS conversions -----------------------------------------------------------------------------------------------
def _ns(duration: Any) -> int:
    return min(INFINITE_NS, int(duration.nanoseconds))


def qos_spec_from_rclpy(profile: QoSProfile) -> QosSpec:
    """A graph endpoint's QoS in the plain form the bag stores (UNKNOWN history/depth 0 as the graph reports it)."""
    return QosSpec(
        reliability=ReliabilityPolicy(profile.reliability).name.lower(),
        durability=DurabilityPolicy(profile.durability).name.lower(),
        history=HistoryPolicy(profile.history).name.lower(),
        depth=int(profile.depth),
        deadline_ns=_ns(profile.deadline),
        lifespan_ns=_ns(profile.lifespan),
        liveliness=LivelinessPolicy(profile.liveliness).name.lower(),
        liveliness_lease_duration_ns=_ns(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def adapt_request_qos(offers: Sequence[QosSpec], depth: int = 10) -> QoSProfile:
    """Subscription QoS that connects to every publisher (ros2 bag record's rule).

    Reliable only when all publishers are reliable (a reliable request does not match best-effort offers), and
    transient-local only when all are, so latched messages (class tables) are received too.
    """
    reliable = bool(offers) and all(o.reliability == "reliable" for o in offers)
    latched = bool(offers) and all(o.durability == "transient_local" for o in offers)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def playback_qos(recorded: Sequence[QosSpec], reliability: str | None = None, depth: int = 10) -> QoSProfile:
    """Publisher QoS for a played topic: the recorded offer when all recorded publishers agreed, else the default.

    History is always keep-last (``depth``): the graph reports history as UNKNOWN, which a publisher cannot use.
    """
    rel, dur = "reliable", "volatile"
    if recorded and len({(q.reliability, q.durability) for q in recorded}) == 1:
        rel = recorded[0].reliability if recorded[0].reliability in ("reliable", "best_effort") else "reliable"
        dur = recorded[0].durability if recorded[0].durability in ("volatile", "transient_local") else "volatile"
    if reliability is not None:
        rel = reliability
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy[rel.upper()],
        durability=DurabilityPolicy[dur.upper()],
    )


def normalize_topic(name: str) -> str:
    return name if name.startswith("/") else "/" + name


# -- recording -----------------------------------------------------------------------------------------------------
@dataclass
class RecordedTopic:
    name: str
    msgtype: str
    type_hash: str
    offers: list[QosSpec]
    count: int = 0


class BagRecorder:
    """Subscribe to live topics and write every message, as received (CDR bytes, receive time), into a bag.

    Topics are resolved from the graph (type, type hash, offered QoS): the recorder can start before the publishers
    and picks topics up as they appear (call :meth:`poll_graph` periodically; :meth:`start` installs a timer that
    does). Not thread-safe by design: run it in one single-threaded executor, which also serialises bag writes.
    """

    def __init__(
        self,
        node: Node,
        writer: BagWriter,
        topics: Iterable[str] | None = None,
        *,
        include_noise: bool = False,
        on_message: Callable[[str, int, bytes], None] | None = None,
        queue_depth: int = 100,
    ) -> None:
        self.node = node
        self.writer = writer
        self.wanted: list[str] | None = None if topics is None else [normalize_topic(t) for t in topics]
        self.include_noise = include_noise
        self.on_message = on_message
        self.queue_depth = queue_depth
        self.recorded: dict[str, RecordedTopic] = {}
        self.problems: dict[str, str] = {}
        self._subs: list[Any] = []
        self._timer: Any = None
        self.last_message_time = 0.0
        self._typestore = writer.typestore

    def start(self, poll_period: float = 0.2) -> None:
        self.poll_graph()
        self._timer = self.node.create_timer(poll_period, self.poll_graph)

    def stop(self) -> None:
        """Stop receiving (the caller closes the writer afterwards)."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs.clear()

    @property
    def missing(self) -> list[str]:
        """Requested topics not yet subscribed."""
        return [t for t in (self.wanted or []) if t not in self.recorded]

    @property
    def total(self) -> int:
        return sum(t.count for t in self.recorded.values())

    def poll_graph(self) -> list[str]:
        """Subscribe to requested topics that have appeared; returns the topics newly subscribed."""
        new: list[str] = []
        for name, types in self.node.get_topic_names_and_types():
            if name in self.recorded:
                continue
            if self.wanted is not None:
                if name not in self.wanted:
                    continue
            elif name in GRAPH_NOISE and not self.include_noise:
                continue
            if len(types) != 1:
                self.problems[name] = f"topic carries several types {types}; not recorded"
                continue
            infos = self.node.get_publishers_info_by_topic(name)
            if not infos:  # only subscribers so far: nothing to learn the offered QoS from yet
                continue
            try:
                self._subscribe(name, types[0], infos)
                new.append(name)
            except ValueError as exc:
                if self.problems.get(name) != str(exc):
                    self.problems[name] = str(exc)
                    self.node.get_logger().error(f"cannot record {name}: {exc}")
        return new

    def _subscribe(self, name: str, msgtype: str, infos: Sequence[Any]) -> None:
        cls = message_class(msgtype)
        offers = [qos_spec_from_rclpy(i.qos_profile) for i in infos]
        graph_hash = _hash_str(infos[0])
        if msgtype not in self._typestore.fielddefs:
            # Someone else's message type: store the definition from its installed .msg files, like ros2 bag does.
            extra = installed_definitions([msgtype], known=self._typestore.fielddefs)
            if not any(t == msgtype for t, _ in extra):
                raise ValueError(
                    f"no definition of {msgtype} found (looked for share/*/msg/*.msg in the install prefixes); "
                    "a bag without the definition could not be read elsewhere"
                )
            self._typestore = build_typestore(extra)
        msgdef, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
        local_hash = self._typestore.hash_rihs01(msgtype)
        if graph_hash and graph_hash != local_hash:
            self.node.get_logger().warning(
                f"{name}: publisher type hash {graph_hash} differs from the local definition of {msgtype} "
                f"({local_hash}); the publisher was built from another version of the message"
            )
        self.writer.add_topic(name, msgtype, offers, msgdef=msgdef, rihs01=graph_hash or local_hash)
        topic = RecordedTopic(name, msgtype, graph_hash or local_hash, offers)
        self.recorded[name] = topic

        def callback(data: bytes, _topic: RecordedTopic = topic) -> None:
            now = self.node.get_clock().now().nanoseconds
            self.writer.write_raw(_topic.name, now, data)
            _topic.count += 1
            self.last_message_time = time.monotonic()
            if self.on_message is not None:
                self.on_message(_topic.name, now, data)

        self._subs.append(
            self.node.create_subscription(cls, name, callback, adapt_request_qos(offers, self.queue_depth), raw=True)
        )
        self.node.get_logger().info(f"recording {name} [{msgtype}]")


def _hash_str(info: Any) -> str:
    h = getattr(info, "topic_type_hash", None)
    if h is None:
        return ""
    text = str(h)
    return text if text.startswith("RIHS01_") else ""


# -- playback ------------------------------------------------------------------------------------------------------
@dataclass
class PlaybackStats:
    """What a playback did; per-frame timing of the sync source when lock-step playback was used."""

    published: dict[str, int] = field(default_factory=dict)
    publish_wall: dict[int, float] = field(default_factory=dict)  # sync-source header stamp -> wall time published
    response_wall: dict[int, float] = field(default_factory=dict)  # stamp -> wall time its sync output arrived
    sync_timeouts: int = 0
    wall_time: float = 0.0
    loops: int = 0

    @property
    def total(self) -> int:
        return sum(self.published.values())


class BagPlayer:
    """Publish a bag's messages with rclpy, honouring recorded timing scaled by ``rate`` (0 = as fast as possible).

    Lock-step mode (``sync_topic``): after each message of ``sync_source`` (by default the first image topic), wait
    until a message with the same header stamp arrives on ``sync_topic`` (e.g. the node's ``semantic`` output), so a
    consumer slower than the bag gets every frame — "as fast as the consumer takes them" — and per-frame latency
    is measured. Spin the node in another thread (:meth:`spin_in_background`) for the sync subscription.
    """

    def __init__(
        self,
        node: Node,
        reader: BagReader,
        *,
        topics: Iterable[str] | None = None,
        rate: float = 1.0,
        loop: bool = False,
        remap: dict[str, str] | None = None,
        reliability: str | None = None,
        clock: bool = False,
        sync_topic: str | None = None,
        sync_source: str | None = None,
        sync_timeout: float = 10.0,
    ) -> None:
        if rate < 0:
            raise ValueError(f"--rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.node = node
        self.reader = reader
        self.rate = rate
        self.loop = loop
        self.remap = {normalize_topic(k): normalize_topic(v) for k, v in (remap or {}).items()}
        available = reader.topics
        if topics is None:
            self.topics = sorted(available)
        else:
            self.topics = [normalize_topic(t) for t in topics]
            for t in self.topics:
                reader.require_topic(t)
        if not self.topics:
            raise ValueError(f"bag {reader.path} has no topics to play")
        self.publishers: dict[str, Any] = {}
        for t in self.topics:
            summary = available[t]
            cls = message_class(summary.msgtype)
            qos = playback_qos(summary.qos, reliability)
            self.publishers[t] = node.create_publisher(cls, self.remap.get(t, t), qos)
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self.sync_topic = normalize_topic(sync_topic) if sync_topic else None
        self.sync_timeout = sync_timeout
        self.sync_source = None
        if self.sync_topic:
            if sync_source:
                self.sync_source = normalize_topic(sync_source)
            else:
                images = [
                    t
                    for t in self.topics
                    if available[t].msgtype.startswith("sensor_msgs/msg/")
                    and available[t].msgtype.endswith(("Image", "CompressedImage"))
                ]
                if not images:
                    raise ValueError("lock-step playback needs an image topic to pace; pass --sync-source")
                self.sync_source = images[0]
            if self.sync_source not in self.topics:
                raise ValueError(f"sync source {self.sync_source} is not among the played topics")
            self._responses: dict[int, float] = {}
            self._cond = threading.Condition()
            sync_type = self._graph_type(self.sync_topic)
            offers = [qos_spec_from_rclpy(i.qos_profile) for i in node.get_publishers_info_by_topic(self.sync_topic)]
            self._sync_sub = node.create_subscription(
                message_class(sync_type), self.sync_topic, self._on_sync, adapt_request_qos(offers, 50)
            )
        self.stats = PlaybackStats()
        self._executor: Any = None
        self._spin_thread: threading.Thread | None = None
        #: An exception that ended the background spin (e.g. a recorder callback on the same node failed). Playback
        #: stops with it instead of waiting out every frame's sync timeout with nobody left to receive answers.
        self.spin_error: BaseException | None = None

    def _graph_type(self, topic: str, timeout: float = 30.0) -> str:
        """Type of a topic published by someone else (the sync output), waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, types in self.node.get_topic_names_and_types():
                if name == topic and types and self.node.get_publishers_info_by_topic(topic):
                    return types[0]
            time.sleep(0.05)
        raise RuntimeError(f"sync topic {topic} did not appear within {timeout:.0f} s; is the consumer running?")

    def _on_sync(self, msg: Any) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._cond:
            self._responses.setdefault(stamp, time.perf_counter())
            self._cond.notify_all()

    def spin_in_background(self) -> None:
        """Spin the node in a daemon thread (needed for lock-step playback and for subscriber matching)."""
        from rclpy.executors import SingleThreadedExecutor

        if self._spin_thread is not None:
            return
        self._executor = SingleThreadedExecutor(context=self.node.context)
        self._executor.add_node(self.node)
        executor = self._executor

        def spin() -> None:
            try:
                executor.spin()
            except BaseException as exc:  # handed to the playing thread, which raises it
                self.spin_error = exc
                if self.sync_topic:
                    with self._cond:
                        self._cond.notify_all()

        self._spin_thread = threading.Thread(target=spin, daemon=True, name="bag-player-spin")
        self._spin_thread.start()

    def _check_spin(self) -> None:
        if self.spin_error is not None:
            raise RuntimeError(
                f"the background ROS spin stopped: {type(self.spin_error).__name__}: {self.spin_error}"
            ) from self.spin_error

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=1.0)
            self._executor = None
        if self._spin_thread is not None:
            self._spin_thread.join(timeout=2.0)
            self._spin_thread = None

    def wait_for_subscribers(self, count: int = 1, timeout: float = 30.0, topics: Iterable[str] | None = None) -> bool:
        """Block until each of ``topics`` (default: all played) has ``count`` subscribers; False on timeout."""
        wanted = [normalize_topic(t) for t in topics] if topics is not None else list(self.publishers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() >= count for t in wanted):
                return True
            time.sleep(0.05)
        return False

    def play(
        self, stop: threading.Event | None = None, progress: Callable[[int, int], None] | None = None
    ) -> PlaybackStats:
        """Play until the end of the bag (or forever with ``loop``, until ``stop`` is set)."""
        stop = stop or threading.Event()
        total = sum(self.reader.topics[t].count for t in self.topics)
        t_start = time.perf_counter()
        while not stop.is_set():
            self._play_once(stop, progress, total)
            self.stats.loops += 1
            if not self.loop:
                break
        self.stats.wall_time = time.perf_counter() - t_start
        return self.stats

    def _play_once(self, stop: threading.Event, progress: Callable[[int, int], None] | None, total: int) -> None:
        bag_t0: int | None = None
        wall_t0 = time.perf_counter()
        for done, m in enumerate(self.reader.messages(self.topics, deserialize=False), start=1):
            if stop.is_set():
                return
            self._check_spin()
            if bag_t0 is None:
                bag_t0 = m.timestamp
            if self.rate > 0:
                target = wall_t0 + (m.timestamp - bag_t0) / 1e9 / self.rate
                while not stop.is_set():
                    delay = target - time.perf_counter()
                    if delay <= 0:
                        break
                    time.sleep(min(delay, 0.1))
            if self.clock_pub is not None:
                self._publish_clock(m.timestamp)
            stamp = None
            if self.sync_topic and m.topic == self.sync_source:
                header = getattr(self.reader.typestore.deserialize_cdr(m.data, m.msgtype), "header", None)
                stamp = None if header is None else header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            self.publishers[m.topic].publish(m.data)
            now = time.perf_counter()
            self.stats.published[m.topic] = self.stats.published.get(m.topic, 0) + 1
            if progress is not None:
                progress(done, total)
            if stamp is not None:
                self.stats.publish_wall[stamp] = now
                self._wait_response(stamp, stop)

    def _wait_response(self, stamp: int, stop: threading.Event) -> None:
        deadline = time.perf_counter() + self.sync_timeout
        with self._cond:
            while stamp not in self._responses and not stop.is_set():
                self._check_spin()
                left = deadline - time.perf_counter()
                if left <= 0:
                    self.stats.sync_timeouts += 1
                    return
                self._cond.wait(min(left, 0.1))
            if stamp in self._responses:
                self.stats.response_wall[stamp] = self._responses[stamp]

    def _publish_clock(self, stamp: int) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec = int(stamp // 1_000_000_000)
        msg.clock.nanosec = int(stamp % 1_000_000_000)
        self.clock_pub.publish(msg)


# -- command-level sessions ----------------------------------------------------------------------------------------
class RosSession:
    """An rclpy context and node owned by one command, with its own Ctrl-C/SIGTERM handling.

    rclpy's default handler would shut the context down at the first Ctrl-C, before a recorder could close its bag;
    here the signal only sets :attr:`stop`, and the command finishes its work (closing the bag) before shutting down.
    """

    def __init__(self, name: str, domain_id: int | None = None, handle_signals: bool = True) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.signals import SignalHandlerOptions

        if domain_id is not None and not 0 <= int(domain_id) <= 232:
            raise ValueError(f"ROS domain id must be 0..232, got {domain_id}")  # rmw would fail with a traceback
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.stop = threading.Event()
        self._old_handlers: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, lambda *_: self.stop.set())

    def close(self) -> None:
        import signal

        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        try:
            self.node.destroy_node()
        finally:
            self.context.try_shutdown()

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record(
    out: str,
    topics: Sequence[str] | None,
    *,
    storage: str = "sqlite3",
    overwrite: bool = False,
    version: int = 9,
    duration: float | None = None,
    max_messages: int | None = None,
    idle_timeout: float | None = None,
    include_noise: bool = False,
    domain_id: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``bisenetformer bag record``: record until Ctrl-C / SIGTERM, ``duration``, ``max_messages`` or
    ``idle_timeout`` seconds without messages (counted from the first message); the bag is always closed properly.
    """
    from rclpy.executors import SingleThreadedExecutor

    # Nonsense limits would give an empty bag and exit 0: refuse them before anything is created.
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration:g}")
    if max_messages is not None and max_messages < 1:
        raise ValueError(f"max_messages must be >= 1, got {max_messages}")
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be > 0 seconds, got {idle_timeout:g}")
    writer = BagWriter(out, storage=storage, overwrite=overwrite, version=version)
    with RosSession("bisenetformer_bag_recorder", domain_id) as session:
        writer.open()
        recorder = BagRecorder(session.node, writer, topics, include_noise=include_noise)
        executor = SingleThreadedExecutor(context=session.context)
        executor.add_node(session.node)
        t0 = time.monotonic()
        announced_ready = False
        last_missing_report = t0
        try:
            recorder.start()
            while not session.stop.is_set():
                executor.spin_once(timeout_sec=0.1)
                now = time.monotonic()
                if recorder.wanted is not None and not recorder.missing and not announced_ready:
                    log(f"recording {len(recorder.recorded)} topic(s) to {out}; Ctrl-C to stop")
                    announced_ready = True
                if recorder.missing and now - last_missing_report > 5.0:
                    log("waiting for publishers on: " + ", ".join(recorder.missing))
                    last_missing_report = now
                if duration is not None and now - t0 >= duration:
                    break
                if max_messages is not None and recorder.total >= max_messages:
                    break
                if idle_timeout is not None and recorder.total and now - recorder.last_message_time >= idle_timeout:
                    break
        finally:
            recorder.stop()
            executor.shutdown(timeout_sec=1.0)
            writer.close()
    summary = {
        "bag": str(out),
        "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in recorder.recorded.values()},
        "never_seen": recorder.missing,
        "problems": dict(recorder.problems),
    }
    return summary


def play(
    bag: str,
    *,
    topics: Sequence[str] | None = None,
    rate: float = 1.0,
    loop: bool = False,
    remap: dict[str, str] | None = None,
    reliability: str | None = None,
    clock: bool = False,
    wait_for_subscribers: int = 0,
    wait_timeout: float = 30.0,
    sync_topic: str | None = None,
    sync_source: str | None = None,
    sync_timeout: float = 10.0,
    domain_id: int | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> PlaybackStats:
    """``bisenetformer bag play``: publish a bag with rclpy until its end (or Ctrl-C when looping)."""
    with BagReader(bag) as reader, RosSession("bisenetformer_bag_player", domain_id) as session:
        player = BagPlayer(
            session.node,
            reader,
            topics=topics,
            rate=rate,
            loop=loop,
            remap=remap,
            reliability=reliability,
            clock=clock,
            sync_topic=sync_topic,
            sync_source=sync_source,
            sync_timeout=sync_timeout,
        )
        player.spin_in_background()
        try:
            if wait_for_subscribers > 0:
                waited = [player.sync_source] if player.sync_source else None
                if not player.wait_for_subscribers(wait_for_subscribers, wait_timeout, waited):
                    raise RuntimeError(
                        f"fewer than {wait_for_subscribers} subscriber(s) appeared within {wait_timeout:.0f} s on "
                        + ", ".join(waited or player.topics)
                        + "; start the consumer first, check ROS_DOMAIN_ID, or drop --wait-for-subscribers"
                    )
            bar = None
            if show_progress:
                from tqdm import tqdm

                bar = tqdm(total=sum(reader.topics[t].count for t in player.topics), unit="msg", desc="play")

            def progress(done: int, total: int) -> None:
                if bar is not None:
                    bar.update(1)

            stats = player.play(session.stop, progress)
            if bar is not None:
                bar.close()
            # Give reliable subscribers a moment to take the last messages before the publishers disappear.
            time.sleep(0.2)
        finally:
            player.shutdown()
        if reader.issues.stopped_early:
            log(f"warning: {reader.issues.stopped_early}")
    return stats

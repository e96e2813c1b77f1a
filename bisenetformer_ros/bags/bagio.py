"""Reading and writing rosbag2 bags (sqlite3 and mcap storage) without a ROS install.

Thin, strict wrappers over ``rosbags.rosbag2``: they add what the bag tools need and rosbags leaves to the caller —
errors that name the cause and the fix (missing bag, truncated or corrupt storage, missing topic, unknown message
type), this package's message types registered, type definitions that a bag brings for types we do not know, QoS
profiles in the same form ``ros2 bag record`` writes them, and a reader that keeps going after a corrupt message and
counts it instead of dying half-way through an evaluation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisenetformer_ros.bags.typestore import build_typestore, default_typestore, type_hash

STORAGES = ("sqlite3", "mcap")
#: Metadata format versions rosbags can write: 9 = Jazzy/Kilted (QoS enums as strings), 8 = Iron (as integers).
BAG_VERSIONS = (8, 9)

#: ``rmw`` "infinite" duration as rosbag2 writes it in metadata.yaml (RMW_DURATION_INFINITE split in sec/nsec).
INFINITE_NS = 2**63 - 1


class BagError(RuntimeError):
    """A bag cannot be read or written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class QosSpec:
    """A QoS profile in plain values (names as in ``ros2 topic info -v``); converts to/from rosbags and rclpy forms.

    Why not rosbags' ``Qos`` everywhere: the recorder builds these from rclpy endpoint info and the player turns them
    back into rclpy profiles, and the core must not import rclpy; plain strings travel between both sides.
    """

    reliability: str = "reliable"  # reliable | best_effort | system_default | unknown | best_available
    durability: str = "volatile"  # volatile | transient_local | system_default | unknown | best_available
    history: str = "keep_last"  # keep_last | keep_all | system_default | unknown
    depth: int = 10
    deadline_ns: int = INFINITE_NS
    lifespan_ns: int = INFINITE_NS
    liveliness: str = "automatic"
    liveliness_lease_duration_ns: int = INFINITE_NS
    avoid_ros_namespace_conventions: bool = False

    def to_rosbags(self) -> Any:
        from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

        def t(ns: int) -> Any:
            return QosTime(int(ns) // 1_000_000_000, int(ns) % 1_000_000_000)

        return Qos(
            QosHistory[self.history.upper()],
            int(self.depth),
            QosReliability[self.reliability.upper()],
            QosDurability[self.durability.upper()],
            t(self.deadline_ns),
            t(self.lifespan_ns),
            QosLiveliness[self.liveliness.upper()],
            t(self.liveliness_lease_duration_ns),
            bool(self.avoid_ros_namespace_conventions),
        )

    @classmethod
    def from_rosbags(cls, qos: Any) -> QosSpec:
        def ns(t: Any) -> int:
            return min(INFINITE_NS, int(t.sec) * 1_000_000_000 + int(t.nsec))

        return cls(
            reliability=qos.reliability.name.lower(),
            durability=qos.durability.name.lower(),
            history=qos.history.name.lower(),
            depth=int(qos.depth),
            deadline_ns=ns(qos.deadline),
            lifespan_ns=ns(qos.lifespan),
            liveliness=qos.liveliness.name.lower(),
            liveliness_lease_duration_ns=ns(qos.liveliness_lease_duration),
            avoid_ros_namespace_conventions=bool(qos.avoid_ros_namespace_conventions),
        )


#: Profiles the synthetic camera bag and the offline output bag record (what a camera driver / our node offer).
SENSOR_QOS = QosSpec(reliability="reliable", durability="volatile", depth=10)
LATCHED_QOS = QosSpec(reliability="reliable", durability="transient_local", depth=1)


@dataclass(frozen=True)
class TopicSummary:
    """What a bag holds on one topic."""

    name: str
    msgtype: str
    count: int
    type_hash: str
    qos: tuple[QosSpec, ...] = ()
    known_type: bool = True


@dataclass
class BagMessage:
    """One message read from a bag. ``msg`` is the rosbags object (None when only raw bytes were asked for)."""

    topic: str
    msgtype: str
    timestamp: int  # bag receive time, ns
    data: bytes
    msg: Any = None


@dataclass
class ReadIssues:
    """Problems met while reading, counted per cause so reports can state them instead of dropping frames."""

    undecodable: dict[str, int] = field(default_factory=dict)  # topic -> messages that did not deserialise
    stopped_early: str | None = None  # why iteration ended before the end of the bag (truncation/corruption)

    def count_undecodable(self, topic: str) -> None:
        self.undecodable[topic] = self.undecodable.get(topic, 0) + 1


def _storage_of(path: Path) -> str:
    if path.is_file():
        return "mcap" if path.suffix == ".mcap" else "sqlite3"
    meta = path / "metadata.yaml"
    if meta.is_file():
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if "storage_identifier" in line:
                return line.split(":", 1)[1].strip()
    if any(path.glob("*.mcap")):
        return "mcap"
    return "sqlite3"


class BagReader:
    """Read a rosbag2 bag (directory with metadata.yaml, or a single .db3 / .mcap file).

    Use as a context manager. ``topics`` lists what is in the bag; ``messages()`` yields messages in timestamp order,
    deserialised with this package's type store (types the store lacks are registered from the definitions the bag
    carries, as ``ros2 bag record`` stores them).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"bag {self.path} does not exist; check the path (a rosbag2 directory or a .db3/.mcap file)"
            )
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            files = sorted(p.name for p in self.path.iterdir())[:8]
            raise BagError(
                f"{self.path} is a directory without metadata.yaml, so it is not a rosbag2 bag (contains: "
                f"{', '.join(files) or 'nothing'}); pass the bag directory that ros2 bag record created, or its "
                ".db3/.mcap file"
            )
        self.storage = _storage_of(self.path)
        self._reader: Any = None
        self.typestore: Any = default_typestore()
        self.issues = ReadIssues()
        self._unknown: set[str] = set()

    # -- opening -------------------------------------------------------------------------------------------------
    def open(self) -> BagReader:
        from rosbags.rosbag2 import Reader

        try:
            reader = Reader(self.path)
            reader.open()
        except FileNotFoundError:
            raise
        except Exception as exc:  # rosbags ReaderError, apsw/sqlite errors, struct errors on truncated mcap
            raise BagError(self._corrupt_message(exc)) from exc
        self._reader = reader
        self._register_bag_types()
        return self

    def _corrupt_message(self, exc: BaseException) -> str:
        hint = (
            "an mcap file without its footer/summary usually means the recording was interrupted; "
            "`ros2 bag reindex` can repair it on a ROS machine"
            if self.storage == "mcap"
            else "the sqlite3 file is incomplete or damaged (interrupted copy or recording)"
        )
        return f"cannot read bag {self.path}: it looks truncated or corrupt ({type(exc).__name__}: {exc}); {hint}"

    def _register_bag_types(self) -> None:
        """Make every topic's type decodable: known types as they are, others from the bag's own definitions."""
        from rosbags.interfaces import MessageDefinitionFormat

        from bisenetformer_ros.bags.typestore import OWN_TYPES

        missing = {c.msgtype for c in self._reader.connections} - set(self.typestore.fielddefs)
        # This package's own messages recorded with an older definition (e.g. PanopticSegment before track_id): the
        # bag's stored definition decodes them (absent fields read as their defaults downstream), not ours.
        older = {
            c.msgtype
            for c in self._reader.connections
            if c.msgtype in OWN_TYPES
            and str(c.digest).startswith("RIHS01_")
            and c.msgdef.format == MessageDefinitionFormat.MSG
            and c.msgdef.data
            and str(c.digest) != type_hash(self.typestore, c.msgtype)
        }
        missing |= older
        if not missing:
            return
        extra: list[tuple[str, str]] = []
        for conn in self._reader.connections:
            if conn.msgtype in missing and conn.msgdef.format == MessageDefinitionFormat.MSG and conn.msgdef.data:
                extra.append((conn.msgtype, conn.msgdef.data))
        if extra:
            try:
                # A fresh store: definitions from a user's bag must not alter the shared one used for writing.
                self.typestore = build_typestore(extra)
            except Exception:  # a bag definition we cannot parse: those topics stay unknown (reported when used)
                self.typestore = default_typestore()
        self._unknown = {t for t in missing if t not in self.typestore.fielddefs}

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, TopicSummary]:
        self._check_open()
        out: dict[str, TopicSummary] = {}
        for conn in self._reader.connections:
            prev = out.get(conn.topic)
            qos = tuple(QosSpec.from_rosbags(q) for q in getattr(conn.ext, "offered_qos_profiles", []) or [])
            if prev is None:
                out[conn.topic] = TopicSummary(
                    conn.topic,
                    conn.msgtype,
                    int(conn.msgcount),
                    conn.digest or "",
                    qos,
                    conn.msgtype not in self._unknown,
                )
            else:  # the same topic split over several connections (e.g. a bag merged from two recordings)
                out[conn.topic] = TopicSummary(
                    prev.name,
                    prev.msgtype,
                    prev.count + int(conn.msgcount),
                    prev.type_hash,
                    prev.qos + qos,
                    prev.known_type,
                )
        return out

    @property
    def start_time(self) -> int:
        self._check_open()
        return int(self._reader.start_time) if self._reader.message_count else 0

    @property
    def end_time(self) -> int:
        self._check_open()
        return int(self._reader.end_time) if self._reader.message_count else 0

    @property
    def message_count(self) -> int:
        self._check_open()
        return int(self._reader.message_count)

    def _check_open(self) -> None:
        if self._reader is None:
            raise BagError("bag reader is not open; use it as a context manager (with BagReader(path) as bag)")

    def require_topic(self, topic: str, msgtypes: Sequence[str] | None = None, what: str = "topic") -> TopicSummary:
        """The summary of ``topic``; a clear error when it is absent, of another type, or of an unknown type."""
        topics = self.topics
        if topic not in topics:
            listing = ", ".join(f"{t} [{s.msgtype}]" for t, s in sorted(topics.items())) or "no topics"
            raise ValueError(f"bag {self.path} has no {what} '{topic}'; it has: {listing}")
        summary = topics[topic]
        if msgtypes is not None and summary.msgtype not in msgtypes:
            raise ValueError(
                f"{what} '{topic}' in bag {self.path} has type {summary.msgtype}; expected " + " or ".join(msgtypes)
            )
        if not summary.known_type:
            raise ValueError(
                f"{what} '{topic}' in bag {self.path} has message type {summary.msgtype}, which is neither a "
                "standard ROS 2 type nor defined in the bag (no message definition stored); re-record it with a "
                "recorder that stores definitions (ros2 bag record on Iron or newer, or bisenetformer bag record)"
            )
        return summary

    # -- messages ------------------------------------------------------------------------------------------------
    def messages(
        self,
        topics: Iterable[str] | None = None,
        *,
        deserialize: bool = True,
        start: int | None = None,
        stop: int | None = None,
    ) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in bag-time order.

        A message that does not deserialise is counted in ``issues.undecodable`` and skipped; storage that breaks
        part-way (truncated file) ends the iteration with the cause in ``issues.stopped_early`` — callers report
        both instead of losing frames silently.
        """
        self._check_open()
        wanted = None if topics is None else set(topics)
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        it = self._reader.messages(connections=conns, start=start, stop=stop)
        while True:
            try:
                conn, timestamp, data = next(it)
            except StopIteration:
                return
            except Exception as exc:
                self.issues.stopped_early = self._corrupt_message(exc)
                return
            msg = None
            if deserialize:
                if conn.msgtype in self._unknown:
                    self.issues.count_undecodable(conn.topic)
                    continue
                try:
                    msg = self.typestore.deserialize_cdr(data, conn.msgtype)
                except Exception:
                    self.issues.count_undecodable(conn.topic)
                    continue
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(data), msg)


class BagWriter:
    """Write a rosbag2 bag that ``ros2 bag info/play`` and rosbags read: metadata.yaml, type definitions and RIHS01
    hashes as rosbags writes them, one offered QoS profile list per topic.

    Use as a context manager; on an exception the partial bag is removed so that a half-written bag never looks
    like a good one.

    Every storage call runs on one thread that the writer owns: sqlite3 objects may only be used by the thread that
    created them, and a recorder adds topics from one thread (graph polling) and writes from another (the executor
    that delivers messages, e.g. the demo's background spin). The writer is therefore safe to use from any thread,
    and calls are serialised.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage: str = "sqlite3",
        overwrite: bool = False,
        version: int = 9,
        typestore: Any = None,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage '{storage}'; choose one of {', '.join(STORAGES)}")
        if version not in BAG_VERSIONS:
            raise ValueError(f"bag format version {version} is not supported; choose one of {BAG_VERSIONS}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise ValueError(f"output bag {self.path} already exists; choose another path or pass --overwrite")
            self._remove_existing()
        self.storage = storage
        self.version = version
        self.typestore = typestore if typestore is not None else default_typestore()
        self._writer: Any = None
        self._thread: ThreadPoolExecutor | None = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def _remove_existing(self) -> None:
        """Delete an old output bag, but only something that is recognisably a bag (never an arbitrary folder)."""
        p = self.path
        if p.is_dir():
            contents = list(p.iterdir())
            if (
                contents
                and not (p / "metadata.yaml").exists()
                and not any(c.suffix in (".db3", ".mcap") for c in contents)
            ):
                raise ValueError(f"{p} exists and is not a rosbag2 bag; refusing to overwrite it")
            shutil.rmtree(p)
        else:
            raise ValueError(f"{p} exists and is a file, not a bag directory; refusing to overwrite it")

    def open(self) -> BagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3

        def make() -> Any:
            writer = Writer(self.path, version=self.version, storage_plugin=plugin)  # type: ignore[arg-type]
            writer.open()
            return writer

        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bag-writer")
        try:
            self._writer = self._call(make)
        except BaseException:
            self._stop_thread()
            raise
        return self

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the writer's own thread (see the class docstring) and return its result or raise."""
        if self._thread is None:
            raise BagError("bag writer is not open; use it as a context manager")
        return self._thread.submit(fn, *args, **kwargs).result()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    def add_topic(
        self,
        topic: str,
        msgtype: str,
        qos: Sequence[QosSpec] = (SENSOR_QOS,),
        *,
        msgdef: str | None = None,
        rihs01: str | None = None,
    ) -> None:
        """Declare a topic before writing to it. ``msgdef``/``rihs01`` pass through definitions of foreign types."""
        if self._writer is None:
            raise BagError("bag writer is not open; use it as a context manager")
        if topic in self._connections:
            return
        if msgdef is None and msgtype not in self.typestore.fielddefs:
            raise ValueError(
                f"cannot record '{topic}': message type {msgtype} is unknown to rosbags and to this package; "
                "it has no definition to store in the bag"
            )
        conn = self._call(
            self._writer.add_connection,
            topic,
            msgtype,
            typestore=self.typestore if msgdef is None else None,
            msgdef=msgdef,
            rihs01=rihs01,
            offered_qos_profiles=[q.to_rosbags() for q in qos],
        )
        self._connections[topic] = conn
        self.counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, timestamp: int, msg: Any) -> None:
        """Serialise a rosbags message object with this writer's type store and store it at ``timestamp`` (ns)."""
        conn = self._connection(topic)
        self.write_raw(topic, timestamp, self.typestore.serialize_cdr(msg, conn.msgtype))

    def write_raw(self, topic: str, timestamp: int, data: bytes | memoryview) -> None:
        """Store already serialised CDR bytes unchanged (what a recorder receives from DDS)."""
        conn = self._connection(topic)
        self._call(self._writer.write, conn, int(timestamp), data)
        self.counts[topic] += 1

    def _connection(self, topic: str) -> Any:
        try:
            return self._connections[topic]
        except KeyError:
            raise BagError(f"topic '{topic}' was not added to bag {self.path}; call add_topic first") from None

    def set_custom_data(self, key: str, value: str) -> None:
        if self._writer is None:
            raise BagError("bag writer is not open")
        self._call(self._writer.set_custom_data, key, value)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                self._call(writer.close)
            finally:
                self._stop_thread()

    def abort(self) -> None:
        """Drop a partial bag (used on errors)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                self._call(writer.abort)
            finally:
                self._stop_thread()
                shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def topic_hash(msgtype: str) -> str:
    """RIHS01 hash of a type known to the default type store (what rclpy reports for the same type)."""
    return type_hash(default_typestore(), msgtype)


def format_bag_info(reader: BagReader) -> str:
    """A short ``ros2 bag info``-like summary, for CLI output and error messages."""
    lines = [
        f"Bag:       {reader.path}",
        f"Storage:   {reader.storage}",
        f"Messages:  {reader.message_count}",
        f"Duration:  {(reader.end_time - reader.start_time) / 1e9:.3f} s",
        "Topics:",
    ]
    for name, s in sorted(reader.topics.items()):
        lines.append(f"  {name}  [{s.msgtype}]  {s.count} msgs")
    return "\n".join(lines)

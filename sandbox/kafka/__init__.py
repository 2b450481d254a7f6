"""A real single-node Apache Kafka broker (KRaft, broker+controller) from the official jars.

How it works: `ensure_jars` resolves `org.apache.kafka:kafka_2.13` and its runtime dependencies
from Maven Central with `mvn dependency:copy-dependencies` on pom.xml beside this file, into the
per-machine cache (`~/.cache/sagesf/kafka-<version>/lib`), once. `KafkaBroker.start` writes a
server.properties, formats KRaft storage, starts `kafka.Kafka` on free ports of 127.0.0.1 and waits
until the broker answers a metadata request. The settings are the development ones from
shared/reference/kafka.md: replication factor 1 for internal topics, no initial rebalance delay,
and a log cleaner that runs often enough for compaction to be observable in tests.

`kafka_service()` is the sandbox stack's entry: data in `.sandbox/kafka/`, port 9092 when free.

Limits: one node, plaintext, no authentication. Production runs against a real cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from sandbox.paths import cache_dir, state_dir
from sandbox.processes import ProcessState, free_port, port_open, spawn, stop_pid, wait_until
from sandbox.service import Service

POM = Path(__file__).with_name("pom.xml")
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
DEFAULT_KAFKA_PORT = 9092

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}" / "lib"


def ensure_jars(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """Resolve the broker jars into the cache unless they are there already. Returns the lib dir."""
    lib = jar_dir(version)
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars: apt-get install maven")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"fetching Kafka {version} jars failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.write_text(version)
    return lib


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Java 17+ is needed for the Kafka broker: apt-get install openjdk-17-jre-headless")
    return found


class KafkaBroker:
    """One broker+controller in `data_dir`; its state file lets another process stop it."""

    def __init__(self, data_dir: Path, port: int | None = None, heap: str = "768m") -> None:
        self.data_dir = data_dir
        self.heap = heap
        self._port = port
        self.state_file = data_dir / "broker.json"

    @property
    def state(self) -> ProcessState | None:
        return ProcessState.load(self.state_file)

    @property
    def bootstrap(self) -> str:
        state = self.state
        if state is None:
            raise RuntimeError("the sandbox Kafka broker is not started")
        return f"127.0.0.1:{state.ports['kafka']}"

    def running(self) -> bool:
        state = self.state
        return state is not None and state.alive and port_open(state.ports["kafka"])

    def _ports(self) -> tuple[int, int]:
        """Keep the previous ports on a restart (clients and the quorum remember them), else new."""
        previous = self.data_dir / "server.properties"
        if previous.exists():
            found = re.search(
                r"PLAINTEXT://127.0.0.1:(\d+),CONTROLLER://127.0.0.1:(\d+)", previous.read_text()
            )
            if found:
                port, cport = int(found.group(1)), int(found.group(2))
                if (self._port in (None, port)) and not port_open(port) and not port_open(cport):
                    return port, cport
        return self._port or free_port(), free_port()

    def _properties(self, port: int, cport: int, logs: Path) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # the cleaner looks for dirty logs every second, so compaction shows within seconds
            "log.cleaner.backoff.ms": "1000",
            "auto.create.topics.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def start(self, timeout: float = 90.0) -> str:
        """Start (or find running) and return the bootstrap address."""
        if self.running():
            return self.bootstrap
        lib = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, cport = self._ports()
        logs = self.data_dir / "logs"
        props = self.data_dir / "server.properties"
        log4j = self.data_dir / "log4j2.properties"
        broker_log = self.data_dir / "broker.log"
        props.write_text(self._properties(port, cport, logs))
        log4j.write_text(LOG4J2.format(log=broker_log))
        java = java_bin()
        classpath = f"{lib}/*"
        base = [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        if not (logs / "meta.properties").exists():
            # a fresh log dir: format it. A kept one keeps its topics across restarts.
            fmt = subprocess.run(
                [*base, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting KRaft storage failed: {fmt.stderr or fmt.stdout}")
        proc = spawn(
            [
                java,
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}",
                "-Dkafka.logs.dir=" + str(self.data_dir),
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            self.data_dir / "broker.out",
        )
        state = ProcessState(
            name="kafka",
            pid=proc.pid,
            log=str(broker_log),
            ports={"kafka": port, "controller": cport},
            extra={"version": KAFKA_VERSION},
        )
        state.save(self.state_file)
        bootstrap = f"127.0.0.1:{port}"
        try:
            wait_until(
                lambda: _answers(bootstrap),
                timeout,
                f"Kafka broker on {bootstrap}",
                alive=lambda: proc.poll() is None,
            )
        except Exception:
            stop_pid(proc.pid)
            raise
        return bootstrap

    def stop(self, timeout: float = 30.0) -> bool:
        state = self.state
        if state is None:
            return True
        stopped = stop_pid(state.pid, timeout)
        if stopped:
            self.state_file.unlink(missing_ok=True)
        return stopped


def _cluster_id() -> str:
    """What `kafka-storage.sh random-uuid` prints: a url-safe base64 of 16 random bytes, never
    starting with '-' (Kafka's Uuid.randomUuid rejects those too: the storage tool's argument
    parser would take `-t -abc...` for an option, and the broker start failed 1 time in 64)."""
    import base64

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _answers(bootstrap: str) -> bool:
    """True when the broker serves metadata and has a controller (it can create topics)."""
    from confluent_kafka.admin import AdminClient

    if not port_open(int(bootstrap.rsplit(":", 1)[1])):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    try:
        md = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - not ready yet, try again
        return False
    return bool(md.brokers)


def kafka_broker() -> KafkaBroker:
    """The sandbox's broker: `.sandbox/kafka/`, port 9092 unless something else holds it."""
    data = state_dir() / "kafka"
    port = None if port_open(DEFAULT_KAFKA_PORT) else DEFAULT_KAFKA_PORT
    return KafkaBroker(data, port=port)


def _kafka_address() -> str | None:
    broker = kafka_broker()
    return broker.bootstrap if broker.running() else None


def kafka_service() -> Service:
    """The broker as a `sandbox.service.Service` (started first, stopped last)."""
    broker = kafka_broker()
    return Service("kafka", broker.start, broker.stop, _kafka_address)

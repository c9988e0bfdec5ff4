"""The local stack: emulated AWS (moto server), a Chroma server, the three functions under
functions-framework (plus the hand-off function's outbox target), and the pumps that carry the
bucket's SQS notifications to ingest and the hub outbox's messages to the outbox target.

Everything listens on loopback and speaks the same wire protocols as production.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from copilot_dev.client import CopilotClient

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
OUTBOX_POLLERS = 4
# Pull jobs (hubs without webhooks) each hold a poller for their window, as each holds a Lambda
# invocation on AWS: enough pollers for the hand-offs a test run keeps open at once.
PULL_POLLERS = 16


_handed_out: set[int] = set()  # chosen in this process (a server may not be listening yet)
_ports_lock = threading.Lock()
LOWEST_PORT = 10000


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, for a server started a little later. Chosen below
    the kernel's ephemeral range where there is room: a port from that range can be taken, in
    between, as the local end of any outgoing connection (a full test run once lost Chroma's
    port that way: "Address ... is not available"). Never the same port twice per process."""
    low = _ephemeral_low()
    with _ports_lock:
        for _ in range(200 if low > LOWEST_PORT + 1000 else 0):
            port = random.randint(LOWEST_PORT, low - 1)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
        while True:  # no room below the range: let the kernel choose
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # the IANA dynamic range (macOS, Windows)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class StackConfig:
    root: Path  # the repository (holds functions/)
    data_dir: Path
    moto_port: int = 5050
    chroma_port: int = 8000
    chat_port: int = 8080
    ingest_port: int = 8082
    handoff_port: int = 8083
    outbox_port: int = 8084  # the hand-off function's outbox target (CloudEvents)
    region: str = "us-east-1"
    bucket: str = "copilot-knowledge"
    queue: str = "copilot-ingest"
    admin_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    receive_wait_seconds: int = 1
    visibility_timeout: int = 5
    # The ingest pump, as Lambda's SQS event source: pollers at once, messages per batch.
    ingest_pollers: int = 2
    ingest_batch_size: int = 25
    ingest_batch_visibility: int = 300  # a batch's messages stay hidden while it is indexed
    max_receive_count: int = 3
    outbox_queue: str = "copilot-hub-outbox.fifo"
    outbox_visibility_timeout: int = 30
    hub_max_attempts: int = 5  # also the outbox queue's maxReceiveCount, as in serverless.yml
    hub_backoff_base: int = 2
    hub_backoff_max: int = 60
    handoff_reorder_window: float = 10
    pull_queue: str = "copilot-hub-pull"
    hub_pull_window: float = 20  # seconds one pull job reads (tests: shorter, more jobs)
    # Off for tests, which poll and post faster than any customer; `copilot up` turns them on.
    rate_limits: bool = False
    # The analytics stream pump, as Lambda's DynamoDB stream event source: a batch every
    # window, retried with back-off while the archive fails, then given up on (the on-failure
    # queue) after this many attempts.
    analytics_window: float = 1.0
    analytics_max_attempts: int = 30
    analytics_lost_queue: str = "copilot-analytics-lost"
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. hub credentials

    @classmethod
    def with_free_ports(cls, root: Path, data_dir: Path) -> StackConfig:
        return cls(
            root=root,
            data_dir=data_dir,
            moto_port=free_port(),
            chroma_port=free_port(),
            chat_port=free_port(),
            ingest_port=free_port(),
            handoff_port=free_port(),
            outbox_port=free_port(),
        )

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def chroma_url(self) -> str:
        return f"http://127.0.0.1:{self.chroma_port}"

    def function_url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self, f'{name}_port')}"

    def env(self) -> dict[str, str]:
        """Environment for the functions, the CLI and tests: the functions' own settings."""
        return {
            "COPILOT_REGION": self.region,
            "COPILOT_AWS_ENDPOINT_URL": self.aws_url,
            "COPILOT_BUCKET": self.bucket,
            "COPILOT_CHROMA_URL": self.chroma_url,
            # moto's queue URLs are predictable: the stack creates this queue at start.
            "COPILOT_INGEST_QUEUE_URL": f"{self.aws_url}/123456789012/{self.queue}",
            "COPILOT_HUB_OUTBOX_QUEUE_URL": f"{self.aws_url}/123456789012/{self.outbox_queue}",
            "COPILOT_HUB_PULL_QUEUE_URL": f"{self.aws_url}/123456789012/{self.pull_queue}",
            "COPILOT_HUB_PULL_WINDOW_SECONDS": str(self.hub_pull_window),
            "COPILOT_HANDOFF_PUBLIC_URL": self.function_url("handoff"),
            "COPILOT_HUB_MAX_ATTEMPTS": str(self.hub_max_attempts),
            "COPILOT_HUB_BACKOFF_BASE_SECONDS": str(self.hub_backoff_base),
            "COPILOT_HUB_BACKOFF_MAX_SECONDS": str(self.hub_backoff_max),
            "COPILOT_HANDOFF_REORDER_WINDOW_SECONDS": str(self.handoff_reorder_window),
            "COPILOT_ADMIN_API_KEY": self.admin_api_key,
            "COPILOT_RATE_LIMITS_ENABLED": str(self.rate_limits).lower(),
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": self.region,
            **self.extra_env,
        }


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self._stop = threading.Event()
        self._pumps: list[threading.Thread] = []
        self._dead_letter_pump: threading.Thread | None = None
        self._outbox_pumps: list[threading.Thread] = []
        self._pull_pumps: list[threading.Thread] = []
        self._analytics_pumps: list[threading.Thread] = []
        self.analytics_exported = 0  # stream records the archive took
        self.analytics_lost = 0  # stream records given up on (sent to the on-failure queue)
        self.analytics_lost_url = ""
        self.pull_url = ""
        self.pull_jobs_run = 0
        self.queue_url = ""
        self.dlq_url = ""
        self.outbox_url = ""
        self.outbox_dlq_url = ""
        self.pumped = 0
        self.outbox_pumped = 0
        self.dead_letters: list[dict[str, Any]] = []  # ingest DLQ messages handed to ingest

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        busy = [
            p
            for p in (
                cfg.moto_port,
                cfg.chroma_port,
                cfg.chat_port,
                cfg.ingest_port,
                cfg.handoff_port,
                cfg.outbox_port,
            )
            if _port_in_use(p)
        ]
        if busy:
            raise RuntimeError(
                f"port(s) {busy} already in use: is another local stack running? "
                "Stop it, or choose another port (copilot up --chat-port N)."
            )
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        logs = cfg.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        chroma_dir = cfg.data_dir / "chroma"
        shutil.rmtree(chroma_dir, ignore_errors=True)  # moto starts empty: so does the index
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, **cfg.env()}
        try:
            self._spawn(
                "moto",
                [sys.executable, "-m", "copilot_dev.localaws", "--port", str(cfg.moto_port)],
                env,
                logs,
            )
            self._spawn(
                "chroma",
                [
                    str(bin_dir / "chroma"),
                    "run",
                    "--path",
                    str(chroma_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(cfg.chroma_port),
                ],
                env,
                logs,
            )
            # (target, its function's folder, signature type); the outbox is handoff's 2nd target
            targets = [
                ("chat", "chat", "http"),
                ("ingest", "ingest", "cloudevent"),
                ("handoff", "handoff", "http"),
                ("outbox", "handoff", "cloudevent"),
            ]
            for name, folder, signature_type in targets:
                self._spawn(
                    name,
                    [
                        str(bin_dir / "functions-framework"),
                        "--target",
                        name,
                        "--source",
                        str(cfg.root / "functions" / folder / "main.py"),
                        "--signature-type",
                        signature_type,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(getattr(cfg, f"{name}_port")),
                    ],
                    # chat: long-polls hold a thread each while they wait (docs/realtime.md);
                    # outbox: so do the pull jobs, each for its window (handoff/pull.py)
                    {**env, "THREADS": "32" if name in ("chat", "outbox") else "8"},
                    logs,
                )
            self._wait_http(cfg.aws_url + "/moto-api/", "moto")
            self.provision()
            self._wait_http(cfg.chroma_url + "/api/v2/heartbeat", "chroma")
            self._wait_http(cfg.function_url("chat") + "/healthz", "chat")
            self._wait_http(cfg.function_url("handoff") + "/healthz", "handoff")
            self._wait_port(cfg.ingest_port, "ingest")
            self._wait_port(cfg.outbox_port, "outbox")
            self._pumps = [
                threading.Thread(target=self._pump_loop, name=f"s3-sqs-pump-{i}", daemon=True)
                for i in range(max(1, cfg.ingest_pollers))
            ]
            for pump in self._pumps:
                pump.start()
            self._dead_letter_pump = threading.Thread(
                target=self._dead_letter_loop, name="ingest-dlq-pump", daemon=True
            )
            self._dead_letter_pump.start()
            self._outbox_pumps = [
                threading.Thread(target=self._outbox_loop, name=f"outbox-pump-{i}", daemon=True)
                for i in range(OUTBOX_POLLERS)
            ]
            self._pull_pumps = [
                threading.Thread(target=self._pull_loop, name=f"pull-pump-{i}", daemon=True)
                for i in range(PULL_POLLERS)
            ]
            self._analytics_pumps = [
                threading.Thread(target=self._analytics_loop, name="analytics-stream-pump"),
                threading.Thread(target=self._analytics_lost_loop, name="analytics-lost-pump"),
            ]
            for pump in [*self._outbox_pumps, *self._pull_pumps, *self._analytics_pumps]:
                pump.daemon = True
                pump.start()
            self._write_stack_file()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        pumps = [*self._pumps, self._dead_letter_pump, *self._outbox_pumps, *self._pull_pumps]
        for pump in [*pumps, *self._analytics_pumps]:
            if pump is not None:
                pump.join(timeout=5)
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 8
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        (self.config.data_dir / STACK_FILE).unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """Stop one service abruptly (outage tests)."""
        proc = self._procs[name]
        proc.kill()
        proc.wait()

    def restart(self, name: str, down_seconds: float = 0.0) -> None:
        """Kill one service, leave it down ``down_seconds``, start it again on the same port and
        data (chaos tests: e.g. Chroma restarting keeps its index on disk).

        Call it from a thread that outlives the service (e.g. the main one): Linux sends the
        parent-death signal (_die_with_parent) when the *thread* that spawned a child exits."""
        self.kill(name)
        time.sleep(down_seconds)
        cmd, env = self._commands[name]
        self._spawn(name, cmd, env, self.config.data_dir / "logs")
        if name == "chroma":
            self._wait_http(self.config.chroma_url + "/api/v2/heartbeat", name)
        else:
            self._wait_port(getattr(self.config, f"{name}_port"), name)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- resources ------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.config.aws_url,
            region_name=self.config.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def copilot_client(self) -> CopilotClient:
        """The chat function's API, with the admin key (what the CLI and the tests call)."""
        from copilot_dev.client import CopilotClient

        return CopilotClient(self.config.function_url("chat"), admin_key=self.config.admin_api_key)

    def provision(self) -> None:
        """Tables, bucket, queues and the bucket's notification, as serverless.yml creates them."""
        from copilot.adapters.aws.dynamo import create_tables
        from copilot.config import Settings

        cfg = self.config
        s = Settings()  # table names: the defaults the functions use too
        create_tables(
            self.client("dynamodb"),
            copilots=s.copilots_table,
            conversations=s.conversations_table,
            documents=s.documents_table,
            analytics_events=s.analytics_table,
        )
        sqs = self.client("sqs")
        self.analytics_lost_url = sqs.create_queue(
            QueueName=cfg.analytics_lost_queue,
            Attributes={"VisibilityTimeout": str(cfg.visibility_timeout)},
        )["QueueUrl"]
        self.dlq_url = sqs.create_queue(QueueName=f"{cfg.queue}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName=cfg.queue,
            Attributes={
                "VisibilityTimeout": str(cfg.visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(cfg.max_receive_count)}
                ),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.outbox_dlq_url = sqs.create_queue(
            QueueName=cfg.outbox_queue.removesuffix(".fifo") + "-dlq.fifo",
            Attributes={"FifoQueue": "true"},
        )["QueueUrl"]
        outbox_dlq_arn = sqs.get_queue_attributes(
            QueueUrl=self.outbox_dlq_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.outbox_url = sqs.create_queue(
            QueueName=cfg.outbox_queue,
            Attributes={
                "FifoQueue": "true",
                "VisibilityTimeout": str(cfg.outbox_visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": outbox_dlq_arn,
                        "maxReceiveCount": str(cfg.hub_max_attempts),
                    }
                ),
            },
        )["QueueUrl"]
        # Pull jobs: a standard queue (a job's successor is a plain message); a job comes back
        # after the visibility timeout only if it died, by when its lease has run out.
        self.pull_url = sqs.create_queue(
            QueueName=cfg.pull_queue,
            Attributes={"VisibilityTimeout": str(int(cfg.hub_pull_window) + 30)},
        )["QueueUrl"]
        s3 = self.client("s3")
        s3.create_bucket(Bucket=s.analytics_bucket)
        s3.create_bucket(Bucket=cfg.bucket)
        s3.put_bucket_notification_configuration(
            Bucket=cfg.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )

    def _receive(self, sqs: Any, queue_url: str, pump: str) -> list[dict[str, Any]]:
        """One long-poll of a queue for a pump (empty on failure, after a pause)."""
        try:
            return list(
                sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.config.receive_wait_seconds,
                    AttributeNames=["All"],
                ).get("Messages", [])
            )
        except Exception:
            if not self._stop.is_set():
                log.exception("%s: receive failed", pump)
                time.sleep(0.5)
            return []

    # --- the pump: SQS -> ingest function, as Lambda's event source mapping would --------

    def _pump_loop(self) -> None:
        """One of ``ingest_pollers``: receives up to ``ingest_batch_size`` messages and hands
        them to the ingest function as one SQS batch. When the batch fails, its messages are
        delivered one by one, so one bad message holds up no other (and only it is retried)."""
        from copilot.entrypoints.ingest import BATCH_EVENT

        sqs = self.client("sqs")
        session = requests.Session()
        url = self.config.function_url("ingest")
        while not self._stop.is_set():
            messages = self._receive_batch(sqs)
            if not messages:
                continue
            if len(messages) > 1:
                body = json.dumps({"Records": [_sqs_record(m) for m in messages]})
                if _post_cloud_event(session, url, body, "aws:sqs", BATCH_EVENT):
                    _delete_all(sqs, self.queue_url, messages, "pump")
                    self.pumped += len(messages)
                    continue
            for message in messages:
                if _post_cloud_event(
                    session, url, message["Body"], "aws:s3", "com.amazonaws.s3.notification"
                ):
                    _delete(sqs, self.queue_url, message, "pump")
                    self.pumped += 1
                    continue
                # Left on the queue: it comes back after the visibility timeout and goes to
                # the dead-letter queue after max_receive_count attempts.
                try:
                    sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.config.visibility_timeout,
                    )
                except Exception:
                    log.warning("pump: could not release a failed message", exc_info=True)

    def _receive_batch(self, sqs: Any) -> list[dict[str, Any]]:
        """Up to ``ingest_batch_size`` messages: one long poll, then what is waiting."""
        cfg = self.config
        batch: list[dict[str, Any]] = []
        wait = cfg.receive_wait_seconds
        while len(batch) < cfg.ingest_batch_size and not self._stop.is_set():
            try:
                got = sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(10, cfg.ingest_batch_size - len(batch)),
                    WaitTimeSeconds=wait,
                    VisibilityTimeout=cfg.ingest_batch_visibility,
                    AttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if not self._stop.is_set():
                    log.exception("pump: receive failed")
                    time.sleep(0.5)
                break
            batch += got
            if len(got) < 10:
                break
            wait = 0
        return batch

    def _dead_letter_loop(self) -> None:
        """The ingest dead-letter queue -> the ingest function (as the ingestDeadLetters
        function's event source does on AWS): it records the documents as failed."""
        from copilot.entrypoints.ingest import DEAD_LETTER_EVENT

        sqs = self.client("sqs")
        session = requests.Session()
        url = self.config.function_url("ingest")
        while not self._stop.is_set():
            for message in self._receive(sqs, self.dlq_url, "dead-letter pump"):
                if _post_cloud_event(session, url, message["Body"], "aws:sqs", DEAD_LETTER_EVENT):
                    _delete(sqs, self.dlq_url, message, "dead-letter pump")
                    self.dead_letters.append(message)

    # --- the outbox pump: SQS FIFO -> the outbox target, as Lambda's event source would ----

    def _outbox_loop(self) -> None:
        """One of OUTBOX_POLLERS pollers, like Lambda's: each delivers what it received before
        polling again, so a slow hub holds up one poller, not every conversation."""
        sqs = self.client("sqs")
        session = requests.Session()
        while not self._stop.is_set():
            batch = self._receive(sqs, self.outbox_url, "outbox pump")
            groups: dict[str, list[dict[str, Any]]] = {}
            for message in batch:
                group = message.get("Attributes", {}).get("MessageGroupId", message["MessageId"])
                groups.setdefault(group, []).append(message)
            # Each conversation's messages in order; FIFO keeps its later messages from being
            # received (by any poller) while these are in flight.
            for messages in groups.values():
                self._deliver_outbox_group(sqs, session, messages)

    def _deliver_outbox_group(
        self, sqs: Any, session: requests.Session, messages: list[dict[str, Any]]
    ) -> None:
        from copilot.handoff.service import backoff_seconds

        url = self.config.function_url("outbox")
        for i, message in enumerate(messages):
            record = _sqs_record(message)
            body = json.dumps(record)
            if _post_cloud_event(session, url, body, "aws:sqs", "com.amazonaws.sqs.message"):
                _delete(sqs, self.outbox_url, message, "outbox pump")
                self.outbox_pumped += 1
                continue
            # Back off (growing with the attempts), this message and the ones behind it alike.
            attempts = _attempts(record)
            cfg = self.config
            delay = backoff_seconds(attempts, cfg.hub_backoff_base, cfg.hub_backoff_max)
            for later in messages[i:]:
                try:
                    sqs.change_message_visibility(
                        QueueUrl=self.outbox_url,
                        ReceiptHandle=later["ReceiptHandle"],
                        VisibilityTimeout=delay,
                    )
                except Exception:
                    log.warning("outbox pump: could not back off a message", exc_info=True)
            return

    # --- the analytics pump: the events table's stream -> the archive, as Lambda's would --

    def _analytics_loop(self) -> None:
        """Reads the analytics events table's stream from its start and hands each batch to
        the ingest function (the exporter), in order, until it takes it: while it fails (the
        archive bucket is down), the same batch again after a back-off, as Lambda's stream
        event source does; after ``analytics_max_attempts`` the batch goes to the on-failure
        queue (its DDBStreamBatchInfo, as Lambda's destination gets it), which the exporter
        counts as lost."""
        from copilot.config import Settings
        from copilot.entrypoints.analytics import STREAM_EVENT

        cfg = self.config
        table = Settings().analytics_table
        if not table:
            return
        streams, sqs = self.client("dynamodbstreams"), self.client("sqs")
        session = requests.Session()
        url = cfg.function_url("ingest")
        arn = self.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while not self._stop.is_set():
            try:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
            except Exception:
                if not self._stop.is_set():
                    log.exception("analytics pump: reading the stream failed")
                    time.sleep(0.5)
                continue
            records = [_stream_record(r) for r in page.get("Records", [])]
            if not records:
                self._stop.wait(cfg.analytics_window)
            elif self._deliver_stream_batch(session, url, records, STREAM_EVENT):
                self.analytics_exported += len(records)
            elif self._stop.is_set():
                return  # stopping: the batch is neither delivered nor given up on
            else:
                info = {
                    "DDBStreamBatchInfo": {
                        "batchSize": len(records),
                        "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                        "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                        "approximateArrivalOfFirstRecord": time.strftime(
                            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
                        ),
                        "streamArn": arn,
                    }
                }
                # Lambda's on-failure destination: the queue keeps it until the exporter has
                # counted it (see _analytics_lost_loop).
                sqs.send_message(QueueUrl=self.analytics_lost_url, MessageBody=json.dumps(info))
                self.analytics_lost += len(records)
            iterator = page.get("NextShardIterator") or iterator

    def _analytics_lost_loop(self) -> None:
        """The on-failure queue -> the exporter, which counts and records what was lost."""
        from copilot.entrypoints.analytics import LOST_EVENT

        sqs = self.client("sqs")
        session = requests.Session()
        url = self.config.function_url("ingest")
        while not self._stop.is_set():
            for message in self._receive(sqs, self.analytics_lost_url, "analytics lost pump"):
                body = json.dumps({"Records": [_sqs_record(message)]})
                if _post_cloud_event(session, url, body, "aws:sqs", LOST_EVENT):
                    _delete(sqs, self.analytics_lost_url, message, "analytics lost pump")

    def _deliver_stream_batch(
        self, session: requests.Session, url: str, records: list[dict[str, Any]], kind: str
    ) -> bool:
        body = json.dumps({"Records": records})
        for attempt in range(self.config.analytics_max_attempts):
            if _post_cloud_event(session, url, body, "aws:dynamodb", kind):
                return True
            if self._stop.wait(min(10.0, 0.5 * 2**attempt)):
                return False
        return False

    # --- the pull pump: SQS -> the outbox target's pull jobs, one job per poller ----------

    def _pull_loop(self) -> None:
        sqs = self.client("sqs")
        session = requests.Session()
        url = self.config.function_url("outbox")
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self.pull_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.config.receive_wait_seconds,
                    AttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if not self._stop.is_set():
                    log.exception("pull pump: receive failed")
                    time.sleep(0.5)
                continue
            for message in messages:
                body = json.dumps(_sqs_record(message))
                if _post_cloud_event(session, url, body, "aws:sqs", "com.amazonaws.sqs.message"):
                    _delete(sqs, self.pull_url, message, "pull pump")
                    self.pull_jobs_run += 1
                # else: it comes back after the visibility timeout (the job's lease is over)

    def pull_jobs_pending(self) -> int:
        """Pull jobs queued, delayed or running (0: no hand-off is being read)."""
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.pull_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    # --- helpers ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], logs: Path) -> None:
        self._commands[name] = (cmd, env)
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._procs[name] = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.config.root,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _check_alive(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is not None:
            tail = (self.config.data_dir / "logs" / f"{name}.log").read_text(errors="replace")[
                -2000:
            ]
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{tail}")

    def _wait_http(self, url: str, name: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._check_alive(name)
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not answer at {url} within {timeout:.0f} s")

    def _wait_port(self, port: int, name: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._check_alive(name)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not listen on port {port} within {timeout:.0f} s")

    def _write_stack_file(self) -> None:
        cfg = self.config
        info = {
            "chat_url": cfg.function_url("chat"),
            "ingest_url": cfg.function_url("ingest"),
            "handoff_url": cfg.function_url("handoff"),
            "env": cfg.env(),
            "pid": os.getpid(),
        }
        path = cfg.data_dir / STACK_FILE
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)


def _delete(sqs: Any, queue_url: str, message: dict[str, Any], what: str) -> None:
    """Delete a message its target took, as Lambda's event source does. A receipt handle
    can run out while a loaded machine delivers the message: SQS then gives it again (every
    target here is idempotent), and the poller must not die with it, or the rest of the
    stack's queue would stop."""
    try:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    except Exception:
        log.warning("%s: could not delete a delivered message", what, exc_info=True)


def _delete_all(sqs: Any, queue_url: str, messages: list[dict[str, Any]], what: str) -> None:
    """``_delete`` of many messages, ten per request."""
    for start in range(0, len(messages), 10):
        part = messages[start : start + 10]
        try:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(part)
                ],
            )
        except Exception:
            log.warning("%s: could not delete delivered messages", what, exc_info=True)


def _stream_record(record: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB stream record as Lambda's event source hands it over (JSON-ready)."""
    stream = record.get("dynamodb", {})
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": stream.get("Keys", {}),
            "NewImage": stream.get("NewImage", {}),
            "SequenceNumber": str(stream.get("SequenceNumber", "0")),
            "StreamViewType": stream.get("StreamViewType", "NEW_IMAGE"),
        },
    }


def _sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as Lambda's event source hands it over (one record of a batch)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
    }


def _post_cloud_event(
    session: requests.Session, url: str, body: str, source: str, kind: str
) -> bool:
    """POST one event to a functions-framework CloudEvent target; True if it was handled."""
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": source,
        "ce-type": kind,
    }
    try:
        return session.post(url, data=body, headers=headers, timeout=300).ok
    except requests.RequestException:
        return False


def _attempts(record: dict[str, Any]) -> int:
    try:
        earlier = int(json.loads(record["body"]).get("attempt", 0))
    except (ValueError, AttributeError, TypeError):
        earlier = 0
    return earlier + int(record["attributes"].get("ApproximateReceiveCount", 1))


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """Children get SIGTERM if the stack's process dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def read_stack_file(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / STACK_FILE
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["LocalStack", "StackConfig", "asdict", "read_stack_file"]

"""Fault-injection harness: processes we own and may break, seeding, counting.

Everything here is started by the harness and only ever signalled by it: a Redis server on a
spare loopback port, TCP proxies (to cut PostgreSQL or SMTP away), Celery worker and beat
processes in their own sessions (so a whole prefork group can be SIGKILLed), a slow or faulty
SMTP server and a push service. The shared PostgreSQL is used through a URL given to us.

No pytest here: bench/faults.py drives the same scenarios at a larger scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal as signals
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from pathlib import Path

import redis
from aiosmtpd.controller import Controller
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import make_url, text

from notifier.celery_app import make_celery
from notifier.config import Settings, load_settings
from notifier.db import engine_for
from tests.support.processes import settings_env
from tests.support.push_service import PushService
from tests.support.smtp import RecordingHandler, SmtpServer, free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"

# Every scenario runs with the default sweep, requeue, lease, heartbeat and takeover
# settings: recovery must be fast with the defaults, not with shrunken clocks.
FAULT_ENV = {
    "SMTP_TIMEOUT_SECONDS": "10",  # a stalled test SMTP server is noticed within a scenario
}

# Only for scenarios 3 and 6 (SMTP and PostgreSQL away for 3 s, and the 429-then-500s
# scenario 4): they test that retries of *failed sends* recover, not how fast; with the
# default 30 s base backoff growing to an hour each would take minutes. Crashes, wiped
# brokers and Retry-After never depend on these.
SHORT_RETRIES = {
    "DELIVERY_RETRY_BASE_SECONDS": "1",
    "DELIVERY_RETRY_MAX_SECONDS": "2",
    "DELIVERY_MAX_ATTEMPTS": "50",  # these outages outlast the default 8 attempts at 1-2 s
    "TASK_MAX_RETRIES": "50",
}


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.1,
) -> float:
    """Poll until `predicate()` is true; return the seconds it took. The message may be lazy."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)
    return time.monotonic() - start


# --------------------------------------------------------------------------- Redis


class OwnRedis:
    """A redis-server of our own on a spare loopback port, stop/start at will: no persistence
    (a restart empties it), or with `persistent` an append-only file in `log_dir` (a restart
    keeps its queues, as a production Redis with AOF or RDB does)."""

    def __init__(self, log_dir: Path, port: int | None = None, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.persistent = persistent
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        # No retries: a stopped server must answer "connection refused" at once.
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def start(self) -> OwnRedis:
        self.starts += 1
        log_path = self.log_dir / f"redis-{self.starts}.log"
        persistence = ["--appendonly", "yes", "--dir", str(self.log_dir),
                       "--appendfilename", f"redis-{self.port}.aof"] if self.persistent else [
                       "--appendonly", "no"]  # fmt: skip
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", *persistence, "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._answers, 10, lambda: f"redis-server did not start:\n{log_path.read_text()}")
        return self

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"redis-server on port {self.port} exited")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, pause: float = 0.0) -> None:
        """Stop this server (losing everything in it unless persistent) and start a new one
        on the same port."""
        self.stop()
        time.sleep(pause)
        self.start()

    def flushall(self) -> int:
        """FLUSHALL; returns how many task messages were queued or unacknowledged."""
        with self.client() as client:
            held = client.llen("celery") + client.hlen("unacked")
            client.flushall()
        return held


# --------------------------------------------------------------------------- RabbitMQ

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
RABBITMQ = os.environ.get("TEST_RABBITMQ", "guest:guest@127.0.0.1:5672")


class OwnVhost:
    """A RabbitMQ virtual host of our own on the shared server (127.0.0.1:5672): the
    scenario's queues live there and nowhere else; deleted with everything in it at stop()."""

    def __init__(self) -> None:
        self.name = f"notifier-fault-{os.getpid()}-{time.time_ns()}"

    @property
    def url(self) -> str:
        return f"amqp://{RABBITMQ}/{self.name}"

    def start(self) -> OwnVhost:
        user = RABBITMQ.split(":", 1)[0]
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")
        return self

    def stop(self) -> None:
        self._ctl("delete_vhost", self.name, check=False)

    @staticmethod
    def _ctl(*args: str, check: bool = True) -> None:
        subprocess.run([RABBITMQCTL, "-q", *args], check=check, capture_output=True,
                       timeout=60)  # fmt: skip


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # the scripts the /usr/sbin wrappers run as rabbitmq


def _rabbitmq_script(name: str) -> str:
    script = RABBITMQ_BIN / name
    return str(script) if script.exists() else (shutil.which(name) or name)


class OwnRabbitMQ:
    """A RabbitMQ node of our own: its own name, ports, data directory and Erlang cookie
    (in the HOME we give it and our rabbitmqctl), no plugins. stop() is a clean shutdown and
    start() boots it again on the same data, as a restarted broker does; the shared server
    on 127.0.0.1:5672 is never touched. Runs as whoever runs the tests, root included."""

    def __init__(self, base: Path) -> None:
        self.base = base / "rabbitmq"
        self.name = f"notifier-fault-{os.getpid()}-{time.time_ns() % 10**9}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _prepare(self) -> None:
        if self.base.exists():
            return
        self.base.mkdir(parents=True)
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (self.base / "enabled_plugins").write_text("[].\n")  # no management, no prometheus
        (self.base / "rabbitmq.conf").write_text("log.console = false\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (port 5672)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # where server and rabbitmqctl find the cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """rabbitmqctl against this node only; its output."""
        done = subprocess.run(
            [_rabbitmq_script("rabbitmqctl"), "-q", "-n", self.name, *args], env=self._env(),
            cwd=self.base, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> OwnRabbitMQ:
        self._prepare()
        self.starts += 1
        log_path = self.base / f"server-{self.starts}.out"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [_rabbitmq_script("rabbitmq-server")], env=self._env(), cwd=self.base,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._answers, 120,
                 lambda: f"RabbitMQ node {self.name} did not start:\n{self.logs()}")  # fmt: skip
        return self

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"RabbitMQ node {self.name} exited:\n{self.logs()}")
        try:
            self.ctl("await_startup", "--timeout", "5", timeout=20)
        except (AssertionError, subprocess.TimeoutExpired):
            return False  # not registered with epmd yet, or still booting
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 2):
            return True
        return False

    def logs(self) -> str:
        files = sorted(self.base.glob("server-*.out")) + sorted(self.base.glob("log/*.log"))
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in files)

    def queues(self) -> dict[str, dict[str, str]]:
        """Per queue: durable, messages ready and unacknowledged (rabbitmqctl list_queues)."""
        columns = ("name", "durable", "messages_ready", "messages_unacknowledged")
        rows = [line.split("\t") for line in self.ctl("list_queues", *columns).splitlines()]
        return {row[0]: dict(zip(columns[1:], row[1:], strict=True))
                for row in rows if len(row) == len(columns) and row[0] != "name"}  # fmt: skip

    def stop(self) -> None:
        """A clean shutdown: durable queues and persistent messages stay on disk."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.ctl("shutdown", check=False, timeout=120)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signals.SIGKILL)  # only the group we started
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --------------------------------------------------------------------------- TCP proxy


class _Link:
    """One proxied connection: two pumps; the sockets close when both pumps are done."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.sockets, self.pending = proxy, (client, upstream), 2
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def cut(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self.cut()
            with self.lock:
                self.pending -= 1
                last = self.pending == 0
            if last:
                for sock in self.sockets:
                    sock.close()
                self.proxy._forget(self)


class TcpProxy:
    """Forward a loopback port (or a port on `host`) to `target`. stop() closes the port and
    cuts every connection (what a crashed or restarted server looks like to its clients);
    start() opens it again."""

    def __init__(
        self, target: tuple[str, int], port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.target = target
        self.host = host
        self.port = port or free_port(host)
        self.connections = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._running = False
        self._acceptor: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(256)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.05)
        self._running = True
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        try:
            while self._running:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                link = _Link(self, client, upstream)
                with self._lock:
                    self._links.add(link)
                    self.connections += 1
                link.start()
        finally:
            listener.close()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def stop(self) -> None:
        self._running = False
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        for link in links:
            for thread in link.threads:
                thread.join(5)


# --------------------------------------------------------------------------- SMTP


@dataclass
class FaultyHandler(RecordingHandler):
    """RecordingHandler that can be slow, answer 421, or keep DATA waiting.

    `holding` keeps DATA waiting before the message is accepted (nothing recorded yet);
    `stalling` records the message, then keeps the 250 reply back: the server has the message
    but the sender does not know it yet (the at-least-once window a crash can hit);
    `holding_rcpt` keeps RCPT TO waiting: the sender is mid-send but has handed over no
    message, so one killed there is sent exactly once by whoever takes its row over.
    """

    data_delay: float = 0.0
    closing: bool = False  # answer "421 closing" to MAIL FROM
    holding: bool = False
    stalling: bool = False
    holding_rcpt: bool = False
    rcpt_seen: Counter = field(default_factory=Counter)  # every RCPT TO, accepted or not
    data_waiting: int = 0  # DATA (or RCPT) commands held or stalled right now
    _parsed: Counter = field(default_factory=Counter, repr=False)
    _parsed_upto: int = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.closing:
            return "421 4.3.2 Service shutting down, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await self._wait_while("holding_rcpt")
        with self.lock:
            self.rcpt_seen[address] += 1
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        await self._wait_while("holding")
        reply = await super().handle_DATA(server, session, envelope)
        await self._wait_while("stalling")
        return reply

    async def _wait_while(self, flag: str) -> None:
        if not getattr(self, flag):
            return
        with self.lock:
            self.data_waiting += 1
        try:
            while getattr(self, flag):
                await asyncio.sleep(0.01)
        finally:
            with self.lock:
                self.data_waiting -= 1

    def message_count(self) -> int:
        with self.lock:
            return len(self.received)

    def by_recipient(self) -> Counter:
        """Messages received per address, read from each message's To header (parsed once)."""
        with self.lock:
            fresh = [r.data for r in self.received[self._parsed_upto :]]
            self._parsed_upto += len(fresh)
        parser = BytesHeaderParser(policy=compat32)
        for data in fresh:
            self._parsed[parseaddr(parser.parsebytes(data, headersonly=True)["To"] or "")[1]] += 1
        return Counter(self._parsed)


class FaultySmtp(SmtpServer):
    def __init__(self, data_delay: float = 0.0) -> None:
        self.handler = FaultyHandler(data_delay=data_delay)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, decode_data=False
        )


# --------------------------------------------------------------------------- processes


class Proc:
    """A `notifier` command in a session of its own: its pid is its process group id."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "notifier.cli", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, needle: str, timeout: float = 60.0) -> None:
        def seen() -> bool:
            if needle in self.output():
                return True
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return False

        wait_for(seen, timeout, lambda: f"{self.name} never printed {needle!r}:\n"
                 f"{self.output()[-3000:]}")  # fmt: skip

    def group(self) -> list[int]:
        """Pids of every live process of this group (the prefork parent and its children)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == self.pid and fields[0] != "Z":
                    pids.append(int(entry.name))
        return sorted(pids)

    def signal(self, signum: int) -> None:
        """Signal the main process only (what `docker stop` or `kill PID` does)."""
        if self.alive():
            os.kill(self.pid, signum)

    def kill_group(self, signum: int = signals.SIGKILL) -> None:
        """Signal every process of the group we started, children included."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.signal(signals.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group(signals.SIGKILL)
                self.popen.wait()
        self.kill_group(signals.SIGKILL)  # pool children orphaned by a killed parent


# --------------------------------------------------------------------------- the stack


def _with_port(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@dataclass
class Stack:
    """Own Redis, SMTP (optionally behind a proxy), push service, optional PostgreSQL proxy,
    and the worker/beat processes started on them; close() stops all of it."""

    tmp: Path
    database_url: str  # direct: what the test itself reads and writes
    redis: OwnRedis
    smtp: FaultySmtp
    push: PushService
    db_proxy: TcpProxy | None
    smtp_proxy: TcpProxy | None
    settings: Settings
    env: dict[str, str]
    processes: list[Proc] = field(default_factory=list)
    vhost: OwnVhost | None = None  # RabbitMQ is the broker (Redis then only paces)
    rabbit: OwnRabbitMQ | None = None  # or a RabbitMQ node of our own, to restart at will

    def start(self, name: str, args: list[str], ready: str | None) -> Proc:
        process = Proc(name, args, self.env, self.tmp)
        self.processes.append(process)
        if ready:
            process.wait_for_output(ready)
        return process

    def worker(
        self, name: str = "worker", concurrency: int = 2, wait: bool = True, node: str = ""
    ) -> Proc:
        """A `notifier worker` (node name `node or name`@host; its log is `name`.log)."""
        node = node or name
        args = ["worker", f"--concurrency={concurrency}", "-n", f"{node}@%h", "--without-mingle"]
        return self.start(name, args, "ready." if wait else None)

    def beat(self) -> Proc:
        return self.start("beat", ["beat"], None)

    def send_task(self, name: str, *args: object) -> None:
        with make_celery(self.settings) as app:
            app.send_task(name, args=args)

    def fan_out(self, article_id: int) -> None:
        self.send_task("notifier.tasks.fan_out_article", article_id)

    def logged(self, needle: str) -> bool:
        """Whether any of our worker/beat processes logged `needle`."""
        return any(needle in process.output() for process in self.processes)

    def logs(self) -> str:
        tails = [f"----- {p.name} log (tail) -----\n{p.output()[-4000:]}" for p in self.processes]
        if self.rabbit is not None:
            tails.append(f"----- RabbitMQ node {self.rabbit.name} -----\n{self.rabbit.logs()}")
        return "\n".join(tails)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for proxy in (self.db_proxy, self.smtp_proxy):
            if proxy is not None:
                proxy.stop()
        self.push.stop()
        self.smtp.stop()
        self.redis.stop()
        if self.vhost is not None:
            self.vhost.stop()
        if self.rabbit is not None:
            self.rabbit.stop()


@contextlib.contextmanager
def open_stack(
    tmp: Path,
    database_url: str,
    *,
    data_delay: float = 0.0,
    db_proxy: bool = False,
    smtp_proxy: bool = False,
    smtp_proxy_up: bool = True,
    broker: str = "redis",
    redis_persistent: bool = False,
    **env: str,
) -> Iterator[Stack]:
    """Start the services a scenario breaks; on error, print the processes' logs. With
    broker="rabbitmq" the tasks go through a vhost of our own on the local RabbitMQ, with
    broker="own-rabbitmq" through a RabbitMQ node of our own (the scenario may restart it);
    either way our own Redis keeps its other job (send-rate limits, REDIS_URL). With
    `redis_persistent` our Redis keeps its data over a restart (an append-only file)."""
    tmp.mkdir(parents=True, exist_ok=True)
    # Until the Stack owns them, each service started is stopped if a later one fails: a
    # server left running would fail whichever test this process runs next.
    with contextlib.ExitStack() as started:
        own_redis = _started(started, OwnRedis(tmp, persistent=redis_persistent))
        vhost = _started(started, OwnVhost()) if broker == "rabbitmq" else None
        rabbit = _started(started, OwnRabbitMQ(tmp)) if broker == "own-rabbitmq" else None
        broker_url = vhost.url if vhost else rabbit.url if rabbit else own_redis.url
        smtp = _started(started, FaultySmtp(data_delay))
        push = _started(started, PushService())
        pg = make_url(database_url)
        pg_target = (pg.host or "127.0.0.1", pg.port or 5432)
        pg_proxy = _started(started, TcpProxy(pg_target)) if db_proxy else None
        mail_proxy = TcpProxy(("127.0.0.1", smtp.port)) if smtp_proxy else None
        if mail_proxy is not None and smtp_proxy_up:
            _started(started, mail_proxy)
        overrides = {
            **FAULT_ENV,
            "DATABASE_URL": _with_port(database_url, pg_proxy.port) if pg_proxy else database_url,
            "CELERY_BROKER_URL": broker_url,
            "REDIS_URL": own_redis.url,
            "SMTP_URL": f"smtp://127.0.0.1:{mail_proxy.port}" if mail_proxy else smtp.url,
            "PUSH_ALLOWED_ORIGINS": push.origin,
            **env,
        }
        settings = _settings(tmp, overrides)
        env_of_processes = {**settings_env(settings), **overrides}
        stack = Stack(tmp, database_url, own_redis, smtp, push, pg_proxy, mail_proxy, settings,
                      env_of_processes, vhost=vhost, rabbit=rabbit)  # fmt: skip
        started.pop_all()  # stack.close() stops them from here on
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.close()


def _started(started: contextlib.ExitStack, service):
    """`service.start()`, with its stop() registered on `started`."""
    running = service.start()
    started.callback(running.stop)
    return running


def _settings(tmp: Path, env: dict[str, str]) -> Settings:
    base = {
        "NOTIFIER_DATA_DIR": str(tmp / "var"),
        "SECRET_KEY": "fault-secret-key",
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "MAIL_FROM": "Aze.Media <news@aze.test>",
    }
    return load_settings({**base, **env})


# --------------------------------------------------------------------------- seeding


def _category_id(conn, slug: str) -> int:
    return conn.execute(text("SELECT id FROM categories WHERE slug = :s"), {"s": slug}).scalar_one()


def seed_email_subscribers(
    url: str, count: int, prefix: str = "reader", category: str = "news"
) -> list[str]:
    """`count` confirmed, active subscribers of `category`, inserted in one statement."""
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "WITH new AS ("
                " INSERT INTO subscribers (email, status, created_at, confirmed_at)"
                " SELECT :prefix || '-' || g || '@example.com', 'active',"
                "  now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'"
                " FROM generate_series(1, :count) AS g RETURNING id)"
                " INSERT INTO subscriber_categories (subscriber_id, category_id)"
                " SELECT id, :category FROM new"
            ),
            {"prefix": prefix, "count": count, "category": _category_id(conn, category)},
        )
    return [f"{prefix}-{n}@example.com" for n in range(1, count + 1)]


def seed_digest_readers(
    url: str, count: int, article_id: int, prefix: str = "morning"
) -> list[str]:
    """`count` confirmed readers taking the article's categories in a daily digest, their
    digest due a minute ago, their period running since yesterday; in three statements."""
    with engine_for(url).begin() as conn:
        ids = conn.execute(
            text(
                "INSERT INTO subscribers (email, status, created_at, confirmed_at)"
                " SELECT :prefix || '-' || g || '@example.com', 'active',"
                "  now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'"
                " FROM generate_series(1, :count) AS g RETURNING id"
            ),
            {"prefix": prefix, "count": count},
        ).scalars().all()  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO subscriber_categories (subscriber_id, category_id, cadence)"
                " SELECT s, c.category_id, 'daily' FROM unnest(CAST(:ids AS integer[])) AS s,"
                " article_categories c WHERE c.article_id = :article"
            ),
            {"ids": list(ids), "article": article_id},
        )
        conn.execute(
            text(
                "INSERT INTO digest_schedules (subscriber_id, cadence, next_at, since)"
                " SELECT s, 'daily', now() AT TIME ZONE 'utc' - interval '1 minute',"
                " now() AT TIME ZONE 'utc' - interval '1 day'"
                " FROM unnest(CAST(:ids AS integer[])) AS s"
            ),
            {"ids": list(ids)},
        )
    return [f"{prefix}-{n}@example.com" for n in range(1, count + 1)]


def seed_push_subscriptions(url: str, browsers: Iterable, category: str = "news") -> None:
    """Active push subscriptions of `category` for the push service's browser subscriptions."""
    rows = [{"endpoint": b.endpoint, "p256dh": b.p256dh, "auth": b.auth} for b in browsers]
    with engine_for(url).begin() as conn:
        ids = (
            conn.execute(
                text(
                    "INSERT INTO push_subscriptions (endpoint, p256dh, auth, status, created_at,"
                    " updated_at) SELECT e, p, a, 'active', now() AT TIME ZONE 'utc',"
                    " now() AT TIME ZONE 'utc' FROM unnest(CAST(:e AS text[]), CAST(:p AS text[]),"
                    " CAST(:a AS text[])) AS t(e, p, a) RETURNING id"
                ),
                {
                    "e": [r["endpoint"] for r in rows],
                    "p": [r["p256dh"] for r in rows],
                    "a": [r["auth"] for r in rows],
                },
            )
            .scalars()
            .all()
        )
        category_id = _category_id(conn, category)
        conn.execute(
            text(
                "INSERT INTO push_subscription_categories (push_subscription_id, category_id)"
                " SELECT unnest(CAST(:ids AS integer[])), :category"
            ),
            {"ids": list(ids), "category": category_id},
        )


_articles = iter(range(1, 1_000_000))


def seed_article(url: str, title: str = "Fault story", category: str = "news") -> int:
    """A new article to announce (its feed row too), as the feed poller would store it."""
    number = next(_articles)
    with engine_for(url).begin() as conn:
        feed_id = conn.execute(
            text(
                "INSERT INTO feeds (url, added_at) VALUES (:u, now() AT TIME ZONE 'utc')"
                " ON CONFLICT (url) DO UPDATE SET url = EXCLUDED.url RETURNING id"
            ),
            {"u": "https://aze.media/feed/"},
        ).scalar_one()
        article_id = conn.execute(
            text(
                "INSERT INTO articles (feed_id, guid, link, title, summary, announce,"
                " first_seen_at, published_at) VALUES (:feed, :guid, :link, :title,"
                " 'What happened, in two lines.', true, now() AT TIME ZONE 'utc',"
                " now() AT TIME ZONE 'utc') RETURNING id"
            ),
            {
                "feed": feed_id,
                "guid": f"https://aze.media/?p=fault-{os.getpid()}-{number}-{time.time_ns()}",
                "link": f"https://aze.media/fault-{number}/",
                "title": title,
            },
        ).scalar_one()
        conn.execute(
            text("INSERT INTO article_categories (article_id, category_id) VALUES (:a, :c)"),
            {"a": article_id, "c": _category_id(conn, category)},
        )
    return article_id


# --------------------------------------------------------------------------- counting


def delivery_states(url: str, article_id: int | None = None) -> Counter:
    """Deliveries per status (of one article, or all)."""
    where = "" if article_id is None else " WHERE article_id = :a"
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            text(f"SELECT status, count(*) FROM deliveries{where} GROUP BY status"),
            {"a": article_id},
        )
        return Counter({status: count for status, count in rows})


def expired_leases(url: str) -> int:
    """Deliveries still 'sending' although their lease has run out: a stuck claim."""
    with engine_for(url).connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM deliveries WHERE status = 'sending'"
                " AND lease_until < now() AT TIME ZONE 'utc'"
            )
        ).scalar_one()


def settled(url: str, article_id: int) -> bool:
    """Nothing of this article is pending or being sent any more."""
    states = delivery_states(url, article_id)
    return sum(states.values()) > 0 and not (states["pending"] or states["sending"])


@dataclass
class Tally:
    delivered: int  # expected recipients that got at least one message
    duplicates: int  # messages beyond the first, per recipient
    lost: int  # expected recipients that got nothing
    strangers: int  # messages to recipients that should not get any


def tally(expected: Iterable[str], received: Counter) -> Tally:
    wanted = set(expected)
    delivered = sum(1 for r in wanted if received[r] > 0)
    duplicates = sum(count - 1 for r, count in received.items() if r in wanted and count > 1)
    strangers = sum(count for r, count in received.items() if r not in wanted)
    return Tally(delivered, duplicates, len(wanted) - delivered, strangers)


@dataclass
class Figures:
    scenario: str
    recipients: int
    delivered: int
    duplicates: int
    lost: int
    seconds: float  # from the fan-out being queued to every recipient having the message
    notes: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        notes = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"[{self.scenario}] recipients={self.recipients} delivered={self.delivered} "
            f"duplicates={self.duplicates} lost={self.lost} seconds={self.seconds:.1f} {notes}"
        ).rstrip()


def wait_for_everyone(
    stack: Stack,
    article_id: int,
    expected: list[str],
    received: Callable[[], Counter],
    started: float,
    timeout: float,
) -> float:
    """Wait until every expected recipient has the message and the article's deliveries are
    settled; return seconds from `started` to the moment the last recipient got it."""
    full_at: list[float] = []

    def done() -> bool:
        if not full_at and tally(expected, received()).lost == 0:
            full_at.append(time.monotonic())
        return bool(full_at) and settled(stack.database_url, article_id)

    def why() -> str:
        t = tally(expected, received())
        states = dict(delivery_states(stack.database_url, article_id))
        return f"not delivered in {timeout}s: {t}, deliveries {states}\n{stack.logs()}"

    wait_for(done, timeout, why, interval=0.25)
    return full_at[0] - started


def errors_like(url: str, pattern: str) -> int:
    """Deliveries whose last recorded error matches the SQL LIKE `pattern`."""
    with engine_for(url).connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM deliveries WHERE last_error LIKE :p"), {"p": pattern}
        ).scalar_one()


def article_id_by_guid(url: str, guid: str) -> int | None:
    with engine_for(url).connect() as conn:
        return conn.execute(
            text("SELECT id FROM articles WHERE guid = :g"), {"g": guid}
        ).scalar_one_or_none()

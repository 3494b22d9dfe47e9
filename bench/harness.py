"""What the benches share: the processes they start and what those cost (CPU, peak RSS),
a scratch database, seeding a million rows fast, and printing figures.

bench/fanout.py and bench/digest.py use these; each bench keeps only its own scenario.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found += [int(p) for p in file.read().split()]
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children_of(current)
    return tree


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: fields[0] is the state (field 3)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot): tells a pid from its reuse."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def cpu_of_servers(database: str, redis_address: str) -> dict[str, float]:
    """CPU seconds of the PostgreSQL backends serving our database (their process title
    names it) and of the Redis server listening on our broker's address (shared with
    whatever else uses that Redis)."""
    totals = {"postgres": 0.0, "redis": 0.0}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                title = file.read().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if title[:1] == ["postgres:"] and database in title:
            server = "postgres"
        elif title[:1] and title[0].endswith("redis-server") and redis_address in title[1:2]:
            server = "redis"
        else:
            continue
        seconds = cpu_seconds(int(entry.name))
        totals[server] += seconds or 0.0
    return totals


def redis_address(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def _status_kb(pid: int, *names: str) -> dict[str, int]:
    values = {}
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                key, _, rest = line.partition(":")
                if key in names:
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Child:
    """A process we start in a session of its own (Ctrl-C reaches us, we stop it), logging
    to a file. Only it and its own descendants are ever signalled."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.seen: dict[int, str | None] = {self.popen.pid: start_time(self.popen.pid)}
        self.stopped = False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} never printed {needle!r}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_until_idle(self, timeout: float = 60.0, window: float = 1.0) -> None:
        """Until the whole process tree used under 5 % of one CPU for `window` seconds: a
        worker that printed "ready." may still be starting its pool children and its feed
        worker (imports, warm-up, broker handshakes), and on a slow machine that CPU lands
        on the first messages of the run. Production workers have been up for hours."""
        deadline = time.monotonic() + timeout
        while True:
            before = self._tree_cpu()
            time.sleep(window)
            if self._tree_cpu() - before < 0.05 * window or time.monotonic() > deadline:
                return

    def _tree_cpu(self) -> float:
        return sum(cpu_seconds(pid) or 0.0 for pid in self.tree())

    def tree(self) -> list[int]:
        pids = process_tree(self.popen.pid) if self.popen.poll() is None else []
        for pid in pids:
            if pid not in self.seen:
                self.seen[pid] = start_time(pid)
        return pids

    def stop(self, timeout: float = 30.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.tree()
        if self.popen.poll() is None:
            self.popen.terminate()  # Celery: warm shutdown, the pool finishes its batch
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for pid, started in self.seen.items():  # pool children left behind, if any
            if pid != self.popen.pid and started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self.log.close()


class Sampler(threading.Thread):
    """Samples a worker's process tree: peak RSS (VmHWM) per process, peak total RSS and
    PSS (shared pages counted once) over the tree, CPU seconds per process.

    PSS is read every `pss_every`-th sample only: the kernel walks a process's page tables
    to sum it, about 2 ms of CPU per worker process at 150 MB, so reading it four times a
    second for six processes took 2-3 % of a two-core machine away from what is measured.
    Memory grows slowly, and the per-process peak (VmHWM) is the kernel's own exact figure."""

    def __init__(self, child: Child, interval: float = 0.25, pss_every: int = 8) -> None:
        super().__init__(daemon=True)
        self.child, self.interval, self.pss_every = child, interval, pss_every
        self.samples = 0
        self.hwm_kb: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def sample(self) -> None:
        with self.lock:
            self._sample()

    def cpu_snapshot(self) -> dict[int, float]:
        self.sample()
        with self.lock:
            return dict(self.cpu)

    def _sample(self) -> None:
        pids = self.child.tree()
        rss = pss = 0
        with_pss = self.samples % self.pss_every == 0
        self.samples += 1
        for pid in pids:
            status = _status_kb(pid, "VmHWM", "VmRSS")
            if not status:
                continue
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status.get("VmHWM", 0))
            rss += status.get("VmRSS", 0)
            pss += _pss_kb(pid) if with_pss else 0
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), seconds)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if with_pss:
            self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.samples = 0  # the last sample reads PSS too
        self.sample()


FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = CAST(:table AS regclass) AND contype = 'f'
"""


def insert_checked_once(conn, table: str, statement: str, params: dict) -> None:
    """Insert with the table's foreign keys dropped, then put them back as they were (which
    checks every row in one join): a million rows in seconds instead of a million checks."""
    keys = conn.execute(text(FOREIGN_KEYS), {"table": table}).all()
    for name, _ in keys:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    conn.execute(text(statement), params)
    for name, definition in keys:
        conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


def rate(count: int, first: float | None, last: float | None) -> float | None:
    if not count or first is None or last is None:
        return None
    return count / max(last - first, 1e-3)


def number(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISSED")


def kept_database() -> str:
    """Like tests.support.databases.scratch_database, minus the drop at the end (a
    context manager that is never exited still drops when it is garbage-collected)."""
    from notifier.schema import upgrade_database
    from tests.support.databases import BASE_PG_URL

    base = make_url(BASE_PG_URL)
    name = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url


def flushed_broker(cleanup: contextlib.ExitStack, redis_url: str) -> None:
    """The run's broker database, emptied now and again when the run ends."""
    import redis

    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    cleanup.callback(broker.close)
    cleanup.callback(broker.flushdb)


def bench_database(cleanup: contextlib.ExitStack, keep: bool) -> str:
    """A scratch PostgreSQL database, migrated: dropped when the run ends, or with `keep`
    kept (and named) for a look afterwards."""
    from tests.support.databases import scratch_database

    say("creating a scratch PostgreSQL database")
    if keep:
        url = kept_database()
        say(f"the database will be kept: {url}")
        return url
    return cleanup.enter_context(scratch_database("notifier_bench"))


def finish(cleanup: contextlib.ExitStack, tmp: Path, logs: Path, keep: bool) -> None:
    """Stop what the run started; then say where its logs are kept, or remove them."""
    cleanup.close()
    if keep:
        say(f"logs kept in {logs}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def interrupted(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

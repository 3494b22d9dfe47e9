"""The send path's own worker CPU per message, in one process, without worker processes.

    .venv/bin/python bench/send_path.py                        # 20,000 readers, both channels
    .venv/bin/python bench/send_path.py --channels email --rounds 5
    .venv/bin/python bench/send_path.py --channels push --send  # with the channels' sending

bench/fanout.py measures the whole service, whose figures move by 10 % from run to run on a
busy machine. This one measures what a send task does with a chunk (claim, address, gate,
compose, record) precisely enough to see a 2 µs change: it seeds the readers as
bench/fanout.py does, plans one article per round into chunks (what the fan-out task does,
without the broker), and calls `dispatch.deliver` on each chunk as a send task would, on
one database connection per task (`session_scope(one_connection=True)`). By default the
channels accept every message at once (`--send` sends them to the sinks instead: Postfix's
smtp-sink or an aiosmtpd stand-in, and bench/sinks.py's push service; `--floor-client`
puts bench/smtp_client.py's minimal single-threaded client where SmtpChannel goes, to see
what the send path would cost around it). Prints this process's CPU µs per message for each
round and the best and median round; beside each round, planning's own CPU per message, the
garbage collector's share and the sending thread's own (the rest is other threads').

Needs PostgreSQL (TEST_DATABASE_URL; a scratch database is created and dropped). Compare
code before and after a change by running it alternately on each, on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import KEY_POOL, seed  # noqa: E402
from bench.harness import bench_database  # noqa: E402
from bench.sinks import PushSink, SmtpSink, make_key_pool  # noqa: E402
from bench.smtp_client import FloorClient  # noqa: E402
from notifier.db import session_scope  # noqa: E402
from notifier.delivery import dispatch, fanout  # noqa: E402
from notifier.delivery.compose import Composer  # noqa: E402
from notifier.delivery.outlets import outlets  # noqa: E402
from notifier.domain.webhook_articles import (  # noqa: E402
    parse_webhook_article,
    publish_webhook_article,
)
from notifier.messages import Outcome, SendResult  # noqa: E402
from notifier.timeutil import utcnow  # noqa: E402
from notifier.vapid import generate_keypair  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.smtp import free_port  # noqa: E402

ACCEPTED = SendResult(Outcome.SENT, "accepted")


class _Accepting:
    """A channel session that accepts every message at once (composing it as it pulls)."""

    def send_many(self, messages: Iterable[tuple[int, object]]) -> Iterator[tuple[int, object]]:
        for key, _message in messages:
            yield key, ACCEPTED

    def close(self) -> None:
        pass


@dataclasses.dataclass
class _AcceptingChannel:
    name: str

    def open(self) -> _Accepting:
        return _Accepting()


def _task_session(url: str):
    """A send task's session: on one connection, where the code measured has that."""
    try:
        return session_scope(url, one_connection=True)
    except TypeError:  # older code, measured for a before-and-after comparison
        return session_scope(url)


def _collect(chunks: list[list[int]]):
    """An enqueue that keeps the chunks instead of sending tasks."""

    def enqueue(ids: list[int], countdown: float = 0.0) -> None:
        chunks.append(list(ids))

    return enqueue


class _CollectorClock:
    """CPU time spent in the garbage collector (gc.callbacks), to show what it costs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


def _settle_like_a_worker() -> None:
    """What a worker process does after warming up (older code measured: nothing)."""
    from notifier import tasks

    settle = getattr(tasks, "settle_after_warm_up", None)
    if settle is not None:
        settle()


def _publish(url: str, round_number: int) -> int:
    with session_scope(url) as session:
        item = parse_webhook_article({
            "guid": f"bench-send-path-{round_number}",
            "url": f"https://aze.media/bench/{round_number}",
            "title": "Bench: one article through the send path",
            "summary": "Published by bench/send_path.py.",
            "categories": ["News", "Economy"],
        })  # fmt: skip
        article = publish_webhook_article(session, item, utcnow(), 0, 5)
        session.commit()
        return article.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--channels", choices=("both", "email", "push"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--send", action="store_true", help="send to the sinks")
    parser.add_argument("--floor-client", action="store_true",
                        help="with --send: email through bench/smtp_client.py's minimal "
                             "single-threaded client instead of SmtpChannel")  # fmt: skip
    args = parser.parse_args(argv)
    if args.floor_client and not args.send:
        parser.error("--floor-client sends: give --send too")
    emails = {"both": args.readers // 2, "email": args.readers, "push": 0}[args.channels]
    pushes = args.readers - emails
    readers = emails + pushes
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        url = bench_database(cleanup, keep=False)
        smtp = SmtpSink(tmp, True, print).start()
        cleanup.callback(smtp.stop)
        pool, p256dh, auth = make_key_pool(max(1, min(KEY_POOL, pushes)))
        vapid_private, vapid_public = generate_keypair()
        push = PushSink(tmp, pool, vapid_public, decrypt_every=10**9).start()
        cleanup.callback(push.stop)
        settings = make_settings(
            tmp, DATABASE_URL=url, SMTP_URL=smtp.url, PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
            PUSH_ALLOWED_ORIGINS=push.origin, VAPID_PRIVATE_KEY=vapid_private,
            VAPID_PUBLIC_KEY=vapid_public, FEED_POLL_SECONDS="3600",
        )  # fmt: skip
        seed(url, emails, pushes, push, p256dh, auth)
        smtp.new_phase(emails * args.rounds)
        push.new_phase(pushes * args.rounds)
        ways = outlets(settings, Composer(settings))
        if args.floor_client:
            floor = FloorClient(smtp.port, settings.smtp_connections)
            ways["email"] = dataclasses.replace(ways["email"], channel=floor)
        if not args.send:
            ways = {name: dataclasses.replace(way, channel=_AcceptingChannel(name))
                    for name, way in ways.items()}  # fmt: skip
        print(f"{readers:,} readers ({emails:,} email, {pushes:,} push), "
              f"{'sent to the sinks' if args.send else 'channels accepting at once'}")  # fmt: skip
        _settle_like_a_worker()
        collector = _CollectorClock()
        rounds = []
        for number in range(args.rounds):
            article_id = _publish(url, number)
            chunks: list[list[int]] = []
            started = time.process_time()
            with session_scope(url) as session:
                fanout.fan_out_article(session, article_id, settings, _collect(chunks),
                                       "bench@send-path")  # fmt: skip
            planning = time.process_time() - started
            started, sent, collecting = time.process_time(), 0, collector.seconds
            this_thread = time.thread_time()
            for ids in chunks:
                with _task_session(url) as session:
                    report = dispatch.deliver(session, ids, ways, settings,
                                              lambda ids, countdown=0.0: None,
                                              holder="bench@send-path")  # fmt: skip
                    sent += report.sent
            per_message = (time.process_time() - started) * 1e6 / readers
            collecting = (collector.seconds - collecting) * 1e6 / readers
            this_thread = (time.thread_time() - this_thread) * 1e6 / readers
            rounds.append(per_message)
            print(f"  round {number + 1}: {sent:,} sent, {per_message:.1f} µs CPU per message "
                  f"(planning {planning * 1e6 / readers:.1f} µs; garbage collection "
                  f"{collecting:.1f} µs of it; the sending thread {this_thread:.1f} µs, "
                  f"other threads the rest)")  # fmt: skip
            if sent != readers:
                print(f"  expected {readers:,} sent", file=sys.stderr)
                return 1
    print(f"send path: best {min(rounds):.1f} µs, median {statistics.median(rounds):.1f} µs "
          f"of this process's CPU per message over {args.rounds} rounds")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

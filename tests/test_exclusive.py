"""One holder at a time across processes (notifier.exclusive), on the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from notifier.exclusive import alone


def test_a_second_run_does_not_get_the_lock_until_the_first_ends(pg_url):
    with (
        alone(pg_url, "job") as first,
        alone(pg_url, "job") as second,
        alone(pg_url, "another job") as other,
    ):
        assert (first, second, other) == (True, False, True)
    with alone(pg_url, "job") as after:
        assert after


def test_a_holder_that_dies_frees_the_lock(pg_url):
    script = textwrap.dedent(f"""
        import sys
        from notifier.exclusive import alone
        with alone({pg_url!r}, "job") as held:
            print(held, flush=True)
            sys.stdin.read()  # until the test kills us
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "True"
            with alone(pg_url, "job") as while_alive:
                assert not while_alive
        finally:
            holder.kill()
    with alone(pg_url, "job") as after_death:
        assert after_death


def test_sqlite_has_no_such_locks_and_always_runs(sqlite_url):
    with alone(sqlite_url, "job") as first, alone(sqlite_url, "job") as second:
        assert first and second

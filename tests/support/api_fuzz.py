"""Counts what the schemathesis tests send, so bin/test can print the figure at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FuzzTally:
    operations: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)  # "2xx": how many
    active: bool = False  # only the fuzz test's requests count, not the document fetches

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def counting(self, app):
        """Wrap a WSGI app: every request the fuzzer and its checks make is counted."""

        def counted(environ, start_response):
            def start(status: str, headers, exc_info=None):
                if self.active:
                    self.statuses[f"{status[0]}xx"] += 1
                return start_response(status, headers, exc_info)

            return app(environ, start)

        return counted

    def summary(self) -> str:
        answers = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        return (
            f"schemathesis: {self.requests} generated requests to {len(self.operations)} "
            f"/api/v1 operations ({answers}); {self.statuses['5xx']} answered 5xx"
        )


TALLY = FuzzTally()

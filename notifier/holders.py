"""Which worker process this is, as claims name it: "node/main pid/pid".

The node name and the main process's pid are set once when a worker starts (before its pool
forks, so pool children inherit them); each process adds its own pid. A worker restarted
under the same node name has a new main pid, so its predecessor's claims are known dead.
"""

from __future__ import annotations

import os

_node: str | None = None
_main_pid: int | None = None


def became_worker(node: str) -> None:
    """Called in a worker's main process before its pool starts."""
    global _node, _main_pid
    _node, _main_pid = node, os.getpid()


def current() -> str | None:
    """This process's name for its claims; None outside a worker (no takeover then)."""
    if _node is None or _main_pid is None:
        return None
    return holder_name(_node, _main_pid, os.getpid())


def holder_name(node: str, main_pid: int, pid: int) -> str:
    return f"{node}/{main_pid}/{pid}"


def parse(holder: str) -> tuple[str, int, int] | None:
    """(node, main pid, pid), or None for a name not made by `holder_name`."""
    node, _, rest = holder.rpartition("/")
    node, _, main = node.rpartition("/")
    if not (node and main.isdigit() and rest.isdigit()):
        return None
    return node, int(main), int(rest)

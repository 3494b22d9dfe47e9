"""Test hosts as Linux network namespaces: each has its own network stack (its own loopback,
its own address on a private /24) and reaches the others, and the root namespace, only
through a bridge in the root namespace. A process started in one cannot reach a server
listening on 127.0.0.1 elsewhere: what it uses must be offered on the bridge address.

Needs root and iproute2 (`ip netns`); `why_not()` says, in a sentence, when that is
impossible. Names carry our pid, so parallel runs never meet; everything is removed on exit,
failure included. We only signal processes we started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"


def why_not() -> str | None:
    """None when network namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); these tests run as root in CI"
    if not Path(IP).exists():
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    probe = f"notifier-probe-{os.getpid()}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is refused here: {made.stderr.strip()}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = [IP, "netns", "exec", netns, IP, *args] if netns else [IP, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no interface or route here uses yet."""
    used = subprocess.run([IP, "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used += subprocess.run([IP, "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(200):
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
        if prefix not in used:
            return ipaddress.IPv4Network(f"{prefix}0/24")
    raise RuntimeError("no free private /24 for the test bridge")


@dataclass
class Host:
    """One test host: a network namespace and its address on the bridge."""

    netns: str
    address: str
    processes: list[HostProcess] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> HostProcess:
        """`python -m notifier.cli ARGS` inside this host, in a session of its own (so its
        prefork children and feeds node are stopped with it)."""
        process = HostProcess(name, [IP, "netns", "exec", self.netns, sys.executable, "-m",
                                     "notifier.cli", *args], env, log_dir)  # fmt: skip
        self.processes.append(process)
        return process


class HostProcess:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never printed {needle!r}:\n"
                                     f"{self.output()[-3000:]}")  # fmt: skip
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL its whole session at once: what a host that dies does to it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its whole session (our own pgid), SIGKILL what outlives `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # children left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


@dataclass
class Network:
    bridge: str
    gateway: str  # the bridge's address in the root namespace: where shared services listen
    hosts: list[Host]


@contextlib.contextmanager
def network(count: int) -> Iterator[Network]:
    """`count` hosts joined by veth pairs to a fresh bridge; all of it gone on exit."""
    tag = str(os.getpid())[-7:]
    bridge = f"nmb{tag}"  # interface names: at most 15 characters
    subnet = _free_subnet()
    addresses = [str(a) for a in subnet.hosts()]
    gateway = addresses[0]
    hosts = [Host(f"notifier-mh-{tag}-{n}", addresses[n]) for n in range(1, count + 1)]
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for n, host in enumerate(hosts, start=1):
            outside, inside = f"nmv{tag}{n}", f"nmp{tag}{n}"
            _ip("netns", "add", host.netns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.netns)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("addr", "add", f"{host.address}/24", "dev", inside, netns=host.netns)
            _ip("link", "set", inside, "up", netns=host.netns)
            _ip("link", "set", "lo", "up", netns=host.netns)
        yield Network(bridge, gateway, hosts)
    finally:
        for host in hosts:
            for process in host.processes:
                process.stop()
        for host in hosts:
            # Deleting the namespace deletes the veth end inside it, and so its peer.
            subprocess.run([IP, "netns", "del", host.netns], capture_output=True)
        subprocess.run([IP, "link", "del", bridge], capture_output=True)

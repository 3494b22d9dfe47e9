"""The lock files stay true to pyproject.toml: what it asks for is pinned, with hashes.

bin/test, bin/dev and the Dockerfile install only what the lock files pin, so a dependency
added to pyproject.toml without `bin/lock` would be missing from every fresh install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
# What the lock is made for (bin/lock): CPython 3.11 on linux x86_64.
LOCKED_FOR = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}


def read_lock(name: str) -> dict[str, tuple[str, int]]:
    """Each pinned package of a lock file: its version and how many hashes it carries."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / name).read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            pins[current] = (match[2].rstrip("\\ "), 0)
        elif "--hash=sha256:" in line:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def wanted(*extras: str) -> list[Requirement]:
    listed = PYPROJECT["build-system"]["requires"] + PYPROJECT["project"]["dependencies"]
    for extra in extras:
        listed += PYPROJECT["project"]["optional-dependencies"][extra]
    requirements = [Requirement(text) for text in listed]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(LOCKED_FOR)]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.txt", ()), ("requirements-test.txt", ("test",))]
)
def test_every_requirement_is_pinned_within_its_range(lock, extras):
    pins = read_lock(lock)
    stale = []
    for requirement in wanted(*extras):
        name = canonicalize_name(requirement.name)
        if name not in pins:
            stale.append(f"{requirement} (not locked)")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            stale.append(f"{requirement} (locked: {pins[name][0]})")
    assert not stale, f"{lock} is out of date with pyproject.toml, run bin/lock: {stale}"


def test_every_pin_carries_hashes():
    for lock in ("requirements.txt", "requirements-test.txt"):
        unhashed = [name for name, (_, hashes) in read_lock(lock).items() if not hashes]
        assert not unhashed, f"{lock} pins without hashes: {unhashed}"


def test_the_image_gets_the_versions_the_tests_ran_with():
    runtime, tested = read_lock("requirements.txt"), read_lock("requirements-test.txt")
    differing = {
        name: (version, tested.get(name, ("none",))[0])
        for name, (version, _) in runtime.items()
        if tested.get(name, ("",))[0] != version
    }
    assert not differing, f"requirements.txt and requirements-test.txt disagree: {differing}"

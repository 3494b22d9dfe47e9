"""A private Dovecot (Debian's dovecot-imapd) for the tests: its own config, sockets, ports,
self-signed certificate and maildirs in a scratch folder, one account per test.

Dovecot runs its login processes as dovenull and refuses to give mail to uid 0, so the
maildirs belong to `nobody`; the scratch folder lives under /tmp (not pytest's 0700 tmp
path) because those users must reach it. See shared notes/dovecot-on-these-machines.md.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.smtp import free_port
from tests.support.tls import self_signed

DOVECOT = "/usr/sbin/dovecot"


@dataclass(frozen=True)
class Dovecot:
    folder: Path
    imap_port: int  # IMAP with STARTTLS offered (plain login allowed too)
    imaps_port: int  # IMAP over TLS from the first byte
    ca_file: Path  # the self-signed certificate, to trust

    def add_account(self) -> tuple[str, str]:
        """A fresh user with an empty mailbox. One passwd-file per user: Dovecot looks at a
        changed passwd-file at most once a second, so a user added to one shared file may
        not be known yet."""
        user, password = f"u{secrets.token_hex(6)}", secrets.token_hex(12)
        path = self.folder / "users" / user
        path.write_text(f"{user}:{{PLAIN}}{password}\n", encoding="ascii")
        path.chmod(0o644)
        return user, password

    def client(self, user: str, password: str) -> imaplib.IMAP4:
        """A plain logged-in client for the test's own look at the mailbox."""
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error:
            imap.shutdown()
            raise
        return imap


def _config(folder: Path, imap_port: int, imaps_port: int, capability: str | None) -> str:
    cert, key = self_signed(folder, "127.0.0.1")
    capability_line = (
        f"protocol imap {{\n  imap_capability = {capability}\n}}" if capability else ""
    )
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
instance_name = test-{folder.name}
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users/%u
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={folder}/mail/%u
}}
mail_location = maildir:{folder}/mail/%u/Maildir
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
  }}
}}
{capability_line}
"""


def _wait_for_greeting(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            imaplib.IMAP4("127.0.0.1", port, timeout=2).shutdown()
            return
        except (OSError, imaplib.IMAP4.error):
            if process.poll() is not None or time.monotonic() > deadline:
                said = log.read_text() if log.exists() else "(no log)"
                raise RuntimeError(f"dovecot did not start: {said}") from None
            time.sleep(0.05)


@contextmanager
def running_dovecot(capability: str | None = None) -> Iterator[Dovecot]:
    """Dovecot in the foreground (we own its pid); `capability` replaces what it offers after
    login (to test a server without MOVE or UIDPLUS)."""
    if not os.path.exists(DOVECOT):
        pytest.skip(f"{DOVECOT} is not installed (Debian package dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("a private dovecot needs root here (it switches to dovenull and nobody)")
    folder = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
    folder.chmod(0o755)
    (folder / "mail").mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(folder / "mail", nobody.pw_uid, nobody.pw_gid)
    (folder / "users").mkdir()
    imap_port, imaps_port = free_port(), free_port()
    config = folder / "dovecot.conf"
    config.write_text(_config(folder, imap_port, imaps_port, capability))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_greeting(imap_port, process, folder / "dovecot.log")
        yield Dovecot(folder, imap_port, imaps_port, folder / "cert.pem")
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(folder, ignore_errors=True)


PROCESSED = "notifier-processed"  # the IMAP_PROCESSED_FOLDER default


def append(imap: imaplib.IMAP4, raw: bytes, flags: str | None = None) -> int:
    """APPEND to INBOX; the new message's UID (Dovecot answers APPENDUID)."""
    status, data = imap.append("INBOX", flags, None, raw)
    assert status == "OK", data
    found = re.search(rb"APPENDUID \d+ (\d+)", data[0])
    assert found, data
    return int(found.group(1))


def folder_contents(imap: imaplib.IMAP4, folder: str) -> dict[int, tuple[frozenset[str], bytes]]:
    """UID -> (flags without \\Recent, message) as the mailbox holds them, read with PEEK."""
    status, _ = imap.select(f'"{folder}"', readonly=True)
    assert status == "OK"
    status, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    messages = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
            messages[uid] = (frozenset(flags) - {"\\Recent"}, item[1])
    imap.unselect()
    return messages

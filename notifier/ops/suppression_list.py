"""The suppression list as ops sees it: addresses masked until an admin asks for one, the
search read from a query string (bad input is a sentence, not a 500), and the CSV export."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping

from notifier.domain.suppressions import SuppressionError, SuppressionQuery
from notifier.models import Suppression

SEARCH_MAX_CHARS = 200
# Addresses in a raw report (ours and the reader's alike), taken whole in linear time.
_ADDRESS = re.compile(r"[^\s<>@\"';:,()\[\]]++@[A-Za-z0-9.-]++")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def mask_address(address: str) -> str:
    """'ann.lee@example.com' -> 'a…@e…e.com': enough to tell rows apart, not to read one."""
    local, _, domain = address.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    masked_host = f"{host[:1]}…{host[-1:]}" if len(host) > 2 else "…"
    return f"{local[:1]}…@{masked_host}{dot}{tld}"


def mask_addresses_in(text: str) -> str:
    """A raw report with every address in it masked (it quotes the reader's many times)."""
    return _ADDRESS.sub(lambda found: mask_address(found.group(0)), text)


def query_from(args: Mapping[str, str]) -> SuppressionQuery:
    """`?q=…&lifted=1` -> a query; SuppressionError (a sentence) for anything else."""
    search = args.get("q", "")
    if len(search) > SEARCH_MAX_CHARS:
        raise SuppressionError(f"The search is too long: at most {SEARCH_MAX_CHARS} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in search):
        raise SuppressionError("The search may not contain control characters.")
    lifted = args.get("lifted", "")
    if lifted not in ("", "0", "1"):
        raise SuppressionError("'lifted' must be 1 (include lifted suppressions) or 0.")
    return SuppressionQuery(search=search.strip(), include_lifted=lifted == "1")


def _cell(value: object) -> str:
    """A spreadsheet never runs a cell as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_CSV_FORMULA) else text


def suppressions_csv(rows: Iterable[Suppression]) -> str:
    """Every column ops needs to act elsewhere (a relay's own list), addresses in full."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["email", "reason", "source", "detail", "suppressed_at", "lifted_at",
                     "lifted_by"])  # fmt: skip
    for row in rows:
        writer.writerow([_cell(v) for v in (
            row.email, row.reason.value, row.source, row.detail, row.created_at.isoformat(),
            row.lifted_at.isoformat() if row.lifted_at else "", row.lifted_by,
        )])  # fmt: skip
    return out.getvalue()

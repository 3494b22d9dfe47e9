"""What every /api/ request body and header is checked for before a view reads it.

Python's JSON parser recurses once per nesting level (2 KB of "[" is a RecursionError) and
accepts lone surrogates ("\\ud800"), which PostgreSQL cannot store; both would surface as a
500 deep in a view. Here they become a 400 with a sentence, once for every API view.
"""

from __future__ import annotations

import json
import re

from flask import abort, g, request

from notifier.domain.limits import JSON_DEPTH_MAX

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)  # linear: no nested repetition
_BRACKETS = re.compile(rb"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_HEADERS_READ = ("Idempotency-Key", "User-Agent", "Origin")  # the ones views keep or compare


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, counted without parsing it."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def has_lone_surrogate(value: object) -> bool:
    """Any string (or object key) holding half of a UTF-16 pair, which is not Unicode."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(item) for item in value)
    return False


def json_body() -> object | None:
    """The request's JSON value, or None when it sent no readable JSON (the view then says
    what to send). The API blueprints run check_api_input() before their views."""
    return g.get("api_json")


def check_api_input() -> None:
    """Refuse, with a sentence, input no view could store; keep the parsed JSON for json_body."""
    for name in _HEADERS_READ:
        if _CONTROL.search(request.headers.get(name, "")):
            abort(400, description=f"The {name} header may not contain control characters.")
    g.api_json = None
    if not request.is_json:
        return
    raw = request.get_data(cache=True)
    if json_depth(raw) > JSON_DEPTH_MAX:
        abort(400, description=f"The JSON body nests deeper than {JSON_DEPTH_MAX} levels.")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return
    if has_lone_surrogate(value):
        abort(400, description="The JSON body holds a lone surrogate (\\ud800-\\udfff): "
              "send text as valid Unicode.")  # fmt: skip
    g.api_json = value

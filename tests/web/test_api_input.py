"""The checks every API body passes before a view reads it."""

from __future__ import annotations

import pytest

from notifier.web.api_input import has_lone_surrogate, json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[[[[[["}', 1),  # brackets in strings do not nest
        (b'{"a": "\\"[[[[", "b": [[]]}', 3),  # nor after an escaped quote
        (b"[" * 5000, 5000),  # counted without recursion
        (b"42", 0),
    ],
)
def test_json_depth_counts_nesting_outside_strings(text, depth):
    assert json_depth(text) == depth


@pytest.mark.parametrize(
    ("value", "lone"),
    [
        ("Qarabağ 😀", False),
        ("\ud800", True),
        ({"k": ["ok", {"\udfff": 1}]}, True),
        ([1, None, True, 2.5], False),
    ],
)
def test_lone_surrogates_are_found_anywhere(value, lone):
    assert has_lone_surrogate(value) is lone

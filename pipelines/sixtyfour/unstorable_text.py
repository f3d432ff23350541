"""Text a warehouse cannot store as the API sent it: NUL characters and lone UTF-16 surrogates.

An escape such as `\\ud83d` without the other half of its pair fits JSON's grammar but names
no character: orjson refuses the whole body, and Arrow could not store such a string either.
A NUL (`\\u0000`) is read, but PostgreSQL refuses it in text, and the pending load with it
would fail every later sync. Refused, one run's odd name would stop the sync for as long as
the API sends it; each such character is stored as U+FFFD instead, in every warehouse alike.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

# A NUL, or a UTF-16 surrogate code point. In text decoded as strict UTF-8 and read by a JSON
# reader, only a lone surrogate is left: the reader joins an escaped pair into one character.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REPLACEMENT = "\ufffd"

# Numbers are read as orjson reads them, so a page means the same whichever reader read it:
# integers in this range exactly, others as floats, a number past a double's range refused.
_ORJSON_INTEGERS = range(-(2**63), 2**64)


def may_hold_nul(body: bytes) -> bool:
    """Whether a JSON body may hold a NUL, which JSON can only send escaped.

    Most bodies hold no backslash at all; looking for one byte costs far less than looking
    for the escape in every body (150 MB of pages: 7 ms against 90).
    """
    return b"\\" in body and b"\\u0000" in body


def replaced(value: Any) -> tuple[Any, int]:
    """The value with each NUL and lone surrogate of its text (keys too) replaced by U+FFFD,
    and how many were."""
    count = 0

    def repaired(item: Any) -> Any:
        nonlocal count
        if type(item) is str:
            text, found = _UNSTORABLE.subn(_REPLACEMENT, item)
            count += found
            return text
        if type(item) is list:
            return [repaired(element) for element in item]
        if type(item) is dict:
            return {repaired(key): repaired(element) for key, element in item.items()}
        return item

    try:
        return repaired(value), count
    except RecursionError:
        raise ValueError("nested deeper than this reader goes") from None


def read_replacing(body: bytes) -> tuple[Any, int]:
    """A body orjson refused, as Python's JSON reader reads it, with `replaced`'s repairs.

    Raises:
        ValueError: the body is not JSON in UTF-8 (a surrogate written as bytes, a byte order
            mark, NaN or Infinity included), holds a number orjson refuses, or is nested
            deeper than this reader goes.
    """
    try:
        parsed = json.loads(
            body.decode("utf-8"),
            parse_int=_integer,
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise ValueError("nested deeper than Python's JSON reader goes") from None
    return replaced(parsed)


def _integer(text: str) -> int | float:
    value = int(text)
    if value in _ORJSON_INTEGERS:
        return value
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{text[:20]}... is past a double's range") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is past a double's range")
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity

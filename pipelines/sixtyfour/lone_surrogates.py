"""Reading an API body that orjson refused because its text holds a lone UTF-16 surrogate.

An escape such as `\\ud83d` without the other half of its pair fits JSON's grammar but names
no character: orjson refuses the whole body, and Arrow could not store such a string either.
Refused, one run's odd name would fail every sync that reads its page, for as long as the API
sends it. Python's JSON reader takes the escape; each lone surrogate then becomes U+FFFD.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

# A UTF-16 surrogate code point. In text decoded as strict UTF-8 and read by Python's JSON
# reader, only a lone one is left: the reader joins an escaped pair into one character.
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"

# Numbers are read as orjson reads them, so a page means the same whichever reader read it:
# integers in this range exactly, others as floats, a number past a double's range refused.
_ORJSON_INTEGERS = range(-(2**63), 2**64)


def read_replacing(body: bytes) -> tuple[Any, int]:
    """The body as Python's JSON reader reads it, each lone surrogate replaced by U+FFFD.

    Returns:
        The value, and how many lone surrogates were replaced (in keys and in values).

    Raises:
        ValueError: the body is not JSON in UTF-8 (a surrogate written as bytes, a byte order
            mark, NaN or Infinity included), holds a number orjson refuses, or is nested
            deeper than this reader goes.
    """
    replaced = 0

    def without_lone_surrogates(value: Any) -> Any:
        nonlocal replaced
        if type(value) is str:
            text, count = _SURROGATE.subn(_REPLACEMENT, value)
            replaced += count
            return text
        if type(value) is list:
            return [without_lone_surrogates(item) for item in value]
        if type(value) is dict:
            return {
                without_lone_surrogates(key): without_lone_surrogates(item)
                for key, item in value.items()
            }
        return value

    try:
        parsed = json.loads(
            body.decode("utf-8"),
            parse_int=_integer,
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
        return without_lone_surrogates(parsed), replaced
    except RecursionError:
        raise ValueError("nested deeper than Python's JSON reader goes") from None


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

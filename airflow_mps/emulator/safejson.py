"""Bounded JSON parsing for request bodies the emulator receives (issue 12, Build item 6).

`json.loads` alone turns hostile but signed bodies into server errors: 100k-deep nesting raises
`RecursionError`, a 5,000-digit integer raises `ValueError` (Python's int-max-str-digits guard), a lone
UTF-16 surrogate (``"\\ud800"``) parses but cannot be encoded back into the UTF-8 answer. The real
service answers all of these with an ``InvalidParameter`` envelope (mps-api.md §5.1), so this parser
refuses them with a `json.JSONDecodeError` — the error the MPS wire layer already turns into that
envelope — and never recurses on the client's structure:

1. nesting depth is measured before parsing on the text's bracket skeleton (string literals removed,
   so brackets inside strings do not count) by at most `MAX_DEPTH` C-speed passes — no recursion;
   ~0.15 s for a 10 MB body of brackets;
2. number literals longer than `MAX_NUMBER_CHARS` are refused in the ``parse_int``/``parse_float``
   hooks before `int()`/`float()` sees them; ``NaN``/``Infinity`` (not JSON) and floats out of a
   double's range (``1e999``, which Python would turn into ``inf``) are refused;
3. the parsed value is walked iteratively (explicit stack) to refuse lone surrogates in keys and values;
4. `RecursionError` and `ValueError` from the C scanner are mapped to `json.JSONDecodeError` anyway,
   as a last line of defence.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "loads_bounded", "loads_request_body"]

#: Deepest nesting accepted. A real ProcessImage body is ~6 levels deep
#: (ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes[].AreaCoordSet[]).
MAX_DEPTH = 64
#: Longest number literal accepted (sign, digits, fraction, exponent). Far above any int64 or double
#: a client sends, far below Python's 4,300-digit int conversion limit.
MAX_NUMBER_CHARS = 256

# A whole string literal (escapes included; an unterminated one runs to the end of the text).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_AS_PARENS = str.maketrans("[]{}", "()()")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _error(message: str, doc: str, pos: int) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, doc, max(0, min(pos, len(doc))))


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` before parsing, without recursion and in C-speed passes.

    Outside string literals only brackets matter; as parentheses, each ``replace("()", "")`` pass
    removes every innermost pair, so a tree of height h is gone after h passes. After ``max_depth``
    passes a remaining ``()`` means deeper nesting; a remainder of more than ``max_depth`` unmatched
    openers too (``[[[[…`` never closes). What is left (unmatched brackets) is malformed JSON the parser
    rejects at the first one, having recursed at most ``2 * max_depth`` levels.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than the number of opening brackets
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_AS_PARENS)
    for _ in range(max_depth):
        if "()" not in skeleton:
            break
        skeleton = skeleton.replace("()", "")
    if "()" in skeleton or skeleton.count("(") > max_depth:
        raise _error(f"Nesting deeper than {max_depth} levels", text, 0)


def _number_hook(convert: type[int] | type[float], text: str) -> Any:
    def hook(literal: str) -> Any:
        if len(literal) > MAX_NUMBER_CHARS:
            pos = text.find(literal)
            raise _error(
                f"A number literal of {len(literal)} characters (the limit is {MAX_NUMBER_CHARS})", text, pos
            )
        value = convert(literal)
        if value in (math.inf, -math.inf):  # 1e999: out of a double's range, as the real parser says
            raise _error(f"The number {literal[:40]} is out of range", text, text.find(literal))
        return value

    return hook


def _refuse_constant(text: str) -> Any:
    def hook(name: str) -> Any:
        raise _error(f"{name} is not a JSON value", text, text.find(name))

    return hook


def _check_strings(value: Any, text: str) -> None:
    """Refuse lone surrogates anywhere in ``value`` (iteratively: depth is already bounded, but no
    recursion keeps this safe on any thread's stack)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _error("A string holds a lone UTF-16 surrogate (not valid Unicode)", text, 0)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads_bounded(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` for untrusted text: raises only `json.JSONDecodeError` (a `ValueError`)."""
    _check_depth(text, max_depth)
    try:
        value = json.loads(
            text,
            parse_int=_number_hook(int, text),
            parse_float=_number_hook(float, text),
            parse_constant=_refuse_constant(text),
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _error("Nesting too deep", text, 0) from None
    except ValueError as exc:  # e.g. int-max-str-digits, should a hook ever be bypassed
        raise _error(str(exc).split(";")[0], text, 0) from None
    _check_strings(value, text)
    return value


def loads_request_body(body: bytes) -> Any:
    """A request body as JSON: empty means ``{}``; raises `UnicodeDecodeError` or `json.JSONDecodeError`.

    A drop-in for ``json.loads(body.decode("utf-8") or "{}")`` with every refusal a client error.
    """
    return loads_bounded(body.decode("utf-8") or "{}")

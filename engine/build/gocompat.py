"""Go string semantics the reference Dockerfile parser relies on.

The reference parser is written in Go, and its quirks come from Go's
standard library: ``unicode.IsSpace`` (which counts U+0085 and U+00A0 as
space), ``strconv.Quote`` (the dump's string format), ``regexp.Split`` and
``encoding/json``. Mirroring them here keeps the parser itself readable:
it reads like the grammar, and the Go-isms live in one place.

Text is carried as ``str`` decoded from UTF-8 with ``surrogateescape``, so
bytes that are not valid UTF-8 survive (as U+DC80..U+DCFF) and print the way
Go prints them (``\\x..``).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata

_GO_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace``."""
    return ch in _GO_SPACES


def trim_left_space(s: str) -> str:
    """``strings.TrimLeftFunc(s, unicode.IsSpace)``."""
    i = 0
    while i < len(s) and s[i] in _GO_SPACES:
        i += 1
    return s[i:]


def trim_space(s: str) -> str:
    """``strings.TrimSpace``."""
    s = trim_left_space(s)
    j = len(s)
    while j > 0 and s[j - 1] in _GO_SPACES:
        j -= 1
    return s[:j]


def regexp_split(pattern: re.Pattern, s: str, n: int) -> list[str]:
    """Go's ``Regexp.Split(s, n)`` (differs from ``re.split`` at the edges)."""
    if n == 0:
        return []
    if pattern.pattern and s == "":
        return [""]
    matches = [m.span() for m in pattern.finditer(s)]
    if n > 0:
        matches = matches[:n]
    out: list[str] = []
    beg = end = 0
    for start, stop in matches:
        if n > 0 and len(out) == n - 1:
            break
        end = start
        if stop != 0:
            out.append(s[beg:end])
        beg = stop
    if end != len(s):
        out.append(s[beg:])
    return out


def _is_print(ch: str) -> bool:
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


_SIMPLE_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
    "\r": "\\r", "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"',
}


def quote(s: str) -> str:
    """Go's ``strconv.Quote``: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x80:
            out.append(ch if 0x20 <= code < 0x7F else f"\\x{code:02x}")
        elif _is_print(ch):
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def quote_list(items: list[str]) -> str:
    """``fmt.Sprintf("%q", []string{...})``."""
    return "[" + " ".join(quote(i) for i in items) + "]"


class JSONInvalid(ValueError):
    """The text is not JSON that Go's ``encoding/json`` would accept."""


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONInvalid(f"number {text} out of range")  # Go: UnmarshalTypeError
    return value


def _no_constant(name: str):
    raise JSONInvalid(f"invalid character in {name}")


_GO_MAX_DEPTH = 10000


def _depth(text: str) -> int:
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _fix_surrogates(value):
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_fix_surrogates(v) for v in value]
    return value


def json_loads(text: str):
    """``json.Unmarshal`` into ``any``: Go's acceptance rules, Python values.

    Raises :class:`JSONInvalid` where Go returns an error.
    """
    kwargs = dict(parse_float=_finite, parse_int=_finite, parse_constant=_no_constant)
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        if _depth(text) > _GO_MAX_DEPTH:
            raise JSONInvalid("exceeded max depth") from None
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 3 * _GO_MAX_DEPTH))
        try:
            value = json.loads(text, **kwargs)
        except (ValueError, RecursionError) as exc:
            raise JSONInvalid(str(exc)) from None
        finally:
            sys.setrecursionlimit(old)
    except JSONInvalid:
        raise
    except ValueError as exc:
        raise JSONInvalid(str(exc)) from None
    return _fix_surrogates(value)

"""Values from files are untrusted input: JSON that may be deep or huge, numbers that may be
infinite or past 64 bits, and regular expressions that may backtrack for hours.

Everything lorahub parses out of an adapter's metadata goes through here, so one bad file gives
one clear error (or one ignored field), never a hang or a traceback.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lorahub.errors import BadFileError

INT64 = 1 << 63
MAX_PATTERN_CHARS = 512
MAX_PATTERNS = 4096  # alpha_pattern/rank_pattern entries a config may have
MAX_OPEN_REPEATS = 2  # unbounded repeats (*, +, {n,}) in one pattern


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def loads(raw: str | bytes | None) -> Any:
    """JSON of `raw`, or None where it is not JSON (bad syntax, NaN/Infinity, ints of 4300+
    digits, nesting deep enough to exhaust the stack)."""
    if not raw:
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def number(value: Any) -> int | float | None:
    """An int within 64 bits or a finite float (SQLite stores both), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def parse_number(text: str) -> int | float | None:
    """`text` as an int, else a float, when it is one that `number` accepts (else None)."""
    text = text.strip()
    if len(text) > 40:
        return None
    for cast in (int, float):
        try:
            return number(cast(text))
        except ValueError:
            continue
    return None


def _open_repeats(parsed: Any, inside: bool = False) -> tuple[int, bool]:
    """(unbounded repeats, whether a repeat holds another repeat) of a parsed pattern."""
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser as p  # type: ignore[attr-defined]

    count, nested = 0, False
    for op, arg in parsed:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            lo, hi, sub = arg
            if hi == c.MAXREPEAT:
                count += 1
            n, deeper = _open_repeats(sub, inside=True)
            has_repeat = n > 0 or any(
                o in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) for o, _ in sub
            )
            nested = nested or deeper or has_repeat
            count += n
        elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
            sub = arg[-1]
            n, deeper = _open_repeats(sub, inside)
            count, nested = count + n, nested or deeper
        elif op == c.BRANCH:
            for sub in arg[1]:
                n, deeper = _open_repeats(sub, inside)
                count, nested = count + n, nested or deeper
        elif op in (c.ASSERT, c.ASSERT_NOT):
            n, deeper = _open_repeats(arg[1], inside)
            count, nested = count + n, nested or deeper
        elif op == c.GROUPREF_EXISTS:
            for sub in arg[1:]:
                if isinstance(sub, p.SubPattern):
                    n, deeper = _open_repeats(sub, inside)
                    count, nested = count + n, nested or deeper
    return count, nested


def module_pattern(pattern: Any, source: str) -> re.Pattern[str] | str:
    """A PEFT `alpha_pattern`/`rank_pattern` key: a plain module name stays a string (matched
    as a name suffix); a regex is compiled when it cannot backtrack badly: at most
    MAX_OPEN_REPEATS unbounded repeats and no repeat inside a repeat. Anything else, or a
    regex that does not compile, is a BadFileError naming `source`."""
    from re import _parser as p  # type: ignore[attr-defined]

    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise BadFileError(f"{source}: a module pattern is not a string of 1-{MAX_PATTERN_CHARS}")
    if re.fullmatch(r"[\w.\-]+", pattern):
        return pattern
    try:
        repeats, nested = _open_repeats(p.parse(pattern))
        compiled = re.compile(rf"(?:.*\.)?(?:{pattern})")
    except (re.error, RecursionError, OverflowError, ValueError):
        raise BadFileError(
            f"{source}: module pattern {pattern[:60]!r} is not a valid regex"
        ) from None
    if nested or repeats > MAX_OPEN_REPEATS:
        raise BadFileError(
            f"{source}: module pattern {pattern[:60]!r} could take exponential time to match "
            "(a repeat inside a repeat, or more than two unbounded repeats); refused"
        )
    return compiled


def pattern_matches(pattern: re.Pattern[str] | str, path: str) -> bool:
    if isinstance(pattern, str):
        return path == pattern or path.endswith("." + pattern)
    return pattern.fullmatch(path) is not None

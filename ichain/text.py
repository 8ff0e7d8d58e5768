"""Showing a stranger's text safely: control characters become visible escapes.

A failure report's stderr, a task's name or a worker's URI is written by someone else. Printed as is, an
``ESC [ ... m`` repaints the terminal, ``ESC ] 52 ;`` writes the clipboard, a carriage return overwrites
the line before it, a C1 ``\\x9b`` is a one-byte CSI on some terminals, and a bidi override (U+202E)
makes the text read in another order than it runs. :func:`neutralize` shows each such character as a
visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``), so what reaches the terminal or the page is only
printable text; the bytes after an escaped ESC (``[31m``) are harmless once the ESC itself is gone.

What is escaped: every Unicode "other" control (``Cc``: C0, DEL, C1), format character (``Cf``: the bidi
embeddings, overrides and isolates, the direction marks, tag characters, soft hyphen, BOM), lone
surrogate (``Cs``: Python's ``surrogateescape`` leaves them, and printing one raises), and the line and
paragraph separators U+2028/U+2029. Kept: printable text of every script, zero-width (non-)joiners
U+200C/U+200D (emoji sequences and several scripts need them), and newline and tab in multi-line mode.
A literal backslash is left as is (paths stay readable), so the output is for people, not for parsing
back. The web page still HTML-escapes on top of this (Jinja autoescape / ``textContent``).
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "\u2026"
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT = frozenset({"\u200c", "\u200d"})  # ZWNJ, ZWJ: joiners, not controls
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str, multiline: bool) -> str:
    """``char`` itself when it is safe to show, else its visible escape."""
    if multiline and char in "\n\t":
        return char
    if char in _KEPT or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    if char in _NAMED:
        return _NAMED[char]
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def neutralize(text: str | bytes, limit: int | None = None, *, multiline: bool = True, tail: bool = False) -> str:
    """``text`` with every control character shown as a visible escape (see the module docstring).

    Args:
        text: Untrusted text; ``bytes`` are decoded as UTF-8 (undecodable bytes become U+FFFD).
        limit: At most this many characters out (escapes count at their shown length); longer text is cut
            and marked with an ellipsis, never in the middle of an escape. None: no limit.
        multiline: Keep newlines and tabs (a stderr tail); False escapes them too (see :func:`one_line`).
        tail: Keep the end instead of the start when cutting (the end of a stderr tail holds the error).

    Returns:
        Text safe to print to a terminal: only printable characters (and newline/tab when ``multiline``).

    Raises:
        ValueError: ``limit`` is below 1.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if limit is None:
        return "".join(_escape(char, multiline) for char in text)
    pieces: list[str] = []
    used = 0
    for char in reversed(text) if tail else text:
        piece = _escape(char, multiline)
        if used + len(piece) > limit:
            # Cut: make room for the ellipsis, dropping whole pieces only.
            while pieces and used + 1 > limit:
                used -= len(pieces.pop())
            pieces.append(ELLIPSIS)
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(reversed(pieces)) if tail else "".join(pieces)


def one_line(text: str | bytes, limit: int | None = None, *, tail: bool = False) -> str:
    """:func:`neutralize` for a single line: newlines, carriage returns and tabs are escaped as well."""
    return neutralize(text, limit, multiline=False, tail=tail)

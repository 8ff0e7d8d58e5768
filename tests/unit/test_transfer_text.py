"""ichain.text: a stranger's bytes never reach a terminal as control characters or escape sequences."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichain.text import ELLIPSIS, neutralize, one_line

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
HOSTILE = BIDI + ["\x1b", "\x9b", "\x00", "\x7f", "\r", "\n", "\t", "\udc80", "\ud800", "\u2028", "\u2029",
                  "\u200d", "\\"]
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _safe(shown: str, multiline: bool = True) -> bool:
    """Only printable characters (plus newline/tab in multi-line mode, and the kept joiners)."""
    allowed = {"\u200c", "\u200d"} | ({"\n", "\t"} if multiline else set())
    return all(c in allowed or unicodedata.category(c) not in UNSAFE for c in shown)


@pytest.mark.parametrize(
    "hostile, shown",
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]52;c;cm0gLXJmIH4=\x07", "\\x1b]52;c;cm0gLXJmIH4=\\x07"),  # OSC 52: write the clipboard (BEL)
        ("\x1b]52;c;eA==\x1b\\", "\\x1b]52;c;eA==\\x1b\\"),  # OSC 52 ended by ST
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "\\x1b]8;;http://evil\\x1b\\link\\x1b]8;;\\x1b\\"),
        ("\x9b31m\x9d0;title\x9c", "\\x9b31m\\x9d0;title\\x9c"),  # C1 CSI / OSC / ST
        ("a\x00b", "a\\x00b"),
        ("ok\rFAKE", "ok\\rFAKE"),
        ("bell\x07 bs\x08 del\x7f", "bell\\x07 bs\\x08 del\\x7f"),
        ("x\x85y", "x\\x85y"),  # NEL
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\ufeffbom\u00ad", "\\ufeffbom\\xad"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone \udc9b", "lone \\udc9b"),
    ],
    ids=["csi", "osc52-bel", "osc52-st", "osc8", "c1", "nul", "cr", "bel-bs-del", "nel", "separators", "bom-shy",
         "tag", "surrogate"],
)
def test_neutralize__hostile_string__visible_escapes_only(hostile, shown):
    assert neutralize(hostile) == shown
    assert _safe(neutralize(hostile))


@pytest.mark.parametrize("control", BIDI + ["\u200e", "\u200f", "\u061c"])
def test_neutralize__bidi_control__escaped(control):
    shown = neutralize(f"user{control}gpj.exe")

    assert control not in shown and f"\\u{ord(control):04x}" in shown


@pytest.mark.parametrize(
    "text",
    ["plain ASCII", "café naïve", "日本語のエラー", "שגיאה", "emoji 👩\u200d💻 flag 🇫🇷", "क्‍ष", "path C:\\tmp\\x1b"],
    ids=["ascii", "latin", "cjk", "hebrew", "zwj-emoji", "zwj-devanagari", "backslash"],
)
def test_neutralize__printable_text__unchanged(text):
    assert neutralize(text) == text


def test_neutralize__multiline__keeps_newline_and_tab():
    assert neutralize("a\n\tb\n") == "a\n\tb\n"


def test_one_line__newline_tab_cr__escaped():
    assert one_line("a\nb\tc\r\n") == "a\\nb\\tc\\r\\n"


def test_neutralize__bytes__decoded_with_replacement():
    assert neutralize(b"ok \xff\x1b[2J") == "ok \ufffd\\x1b[2J"


@pytest.mark.parametrize(
    "text, limit, tail, shown",
    [
        ("abcdef", 6, False, "abcdef"),
        ("abcdefg", 6, False, "abcde" + ELLIPSIS),
        ("abcdefg", 6, True, ELLIPSIS + "cdefg"),
        ("ab\x1b[31m", 4, False, "ab" + ELLIPSIS),  # the 4-character escape does not fit: never half of it
        ("\x1b\x1b\x1b", 9, False, "\\x1b\\x1b" + ELLIPSIS),
        ("\x1b\x1bab", 5, True, ELLIPSIS + "ab"),
        ("abc", 1, False, ELLIPSIS),
        ("", 1, False, ""),
    ],
)
def test_neutralize__limit__cut_with_ellipsis_at_an_escape_boundary(text, limit, tail, shown):
    assert neutralize(text, limit, tail=tail) == shown


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_neutralize__bad_limit__raises_valueerror(limit):
    with pytest.raises(ValueError):
        neutralize("x", limit)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=()) | st.sampled_from(HOSTILE)),
       limit=st.none() | st.integers(1, 60), multiline=st.booleans(), tail=st.booleans())
def test_neutralize__any_text__safe_bounded_and_stable(text, limit, multiline, tail):
    shown = neutralize(text, limit, multiline=multiline, tail=tail)

    assert _safe(shown, multiline)
    assert limit is None or len(shown) <= limit
    assert neutralize(shown, multiline=multiline) == shown  # nothing left to escape

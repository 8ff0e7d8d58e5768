"""Failure reports: sealed to the requester, at most 1024 bytes, and refused whole when anything is off."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichain.errors import IChainError
from ichain.transfer import (
    ContextInvalid,
    FailureReport,
    KeyPair,
    PublicKeyInvalid,
    ReportInvalid,
    TransferContext,
    TransferError,
    WrongKey,
    open_report,
    report_sender,
    seal_report,
)
from ichain.transfer.report import MAX_REPORT, _seal

MARKET = "0x" + "6c" * 20
REQUESTER = "0x" + "3f" * 20
RECIPIENT = KeyPair.generate()
PROVIDER = KeyPair.generate()
TRACEBACK = 'Traceback (most recent call last):\n  File "run.py", line 3, in <module>\nValueError: boom\n'


def context(task_id=7, sender=PROVIDER, **changed):
    fields = dict(chain_id=31337, market=MARKET, task_id=task_id, role="failure-report", requester=REQUESTER,
                  sender_key=sender.public_bytes)
    return TransferContext(**{**fields, **changed})


def seal(stderr=TRACEBACK, exit_code=1, stage="execute", ctx=None, sender=PROVIDER):
    return seal_report(RECIPIENT.public_bytes, ctx or context(sender=sender), exit_code, stage, stderr, sender)


# --- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("stage, exit_code", [("execute", 1), ("validate", 3), ("execute", -9), ("execute", 2**32 - 1)])
def test_open_report__sealed_report__round_trips_fields_and_error_line(stage, exit_code):
    sealed = seal(exit_code=exit_code, stage=stage)

    report = open_report(sealed, RECIPIENT, context())

    assert report == FailureReport(exit_code, stage, TRACEBACK, "ValueError: boom", PROVIDER.public_bytes)
    assert len(sealed) <= MAX_REPORT


def test_report_sender__sealed_report__names_the_providers_key_and_opens_with_it():
    sealed = seal()

    key = report_sender(sealed)

    assert key == PROVIDER.public_bytes
    assert open_report(sealed, RECIPIENT, context().with_sender(key)).error_line == "ValueError: boom"


@pytest.mark.parametrize(
    "stderr, error_line",
    [
        ("", ""),
        ("\n \n\t\n", ""),
        ("first\r\nKeyError: 'x'\r\n\r\n", "KeyError: 'x'"),
        ("only line", "only line"),
        (b"bytes \xff\nOSError: disk\n", "OSError: disk"),
        ("  indented error  \n", "indented error"),
    ],
    ids=["empty", "blank", "crlf", "one-line", "bytes", "spaces"],
)
def test_open_report__stderr_shapes__error_line_is_last_non_empty_line(stderr, error_line):
    assert open_report(seal(stderr), RECIPIENT, context()).error_line == error_line


def test_seal_report__bytes_stderr_not_utf8__decoded_with_replacement():
    report = open_report(seal(b"\xff\xfe caf\xc3\xa9"), RECIPIENT, context())

    assert report.stderr_tail == "\ufffd\ufffd café"


def test_seal_report__lone_surrogates__replaced_not_raised():
    report = open_report(seal("bad \udcff byte"), RECIPIENT, context())

    assert report.stderr_tail == "bad ? byte"


# --- size ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["x", "é", "\x1b", "\U0001f600", '"'], ids=["ascii", "2-byte", "escaped", "4-byte", "quote"])
def test_seal_report__oversize_stderr__fits_1024_bytes_keeping_the_end(unit):
    stderr = unit * 5000 + "\nRuntimeError: the end\n"

    sealed = seal(stderr)
    report = open_report(sealed, RECIPIENT, context())

    assert MAX_REPORT - 8 <= len(sealed) <= MAX_REPORT  # cut to fit, not far below
    assert stderr.endswith(report.stderr_tail) and len(report.stderr_tail) < len(stderr)
    assert report.error_line == "RuntimeError: the end"


@settings(max_examples=150, deadline=None)
@given(stderr=st.text(max_size=3000), exit_code=st.integers(-(2**31), 2**32 - 1))
def test_seal_report__any_text__fits_and_opens_to_a_suffix(stderr, exit_code):
    sealed = seal(stderr, exit_code=exit_code)

    report = open_report(sealed, RECIPIENT, context())

    assert len(sealed) <= MAX_REPORT
    assert report.exit_code == exit_code and stderr.endswith(report.stderr_tail)
    short = len(json.dumps(stderr, ensure_ascii=False).encode()) + 160 <= MAX_REPORT
    assert report.stderr_tail == stderr or not short  # what fits is kept whole


# --- refusals -----------------------------------------------------------------------------------
def _one_line(error: Exception) -> None:
    assert isinstance(error, TransferError) and isinstance(error, IChainError)
    assert "\n" not in str(error) and len(str(error)) < 200


@pytest.mark.parametrize("position", ["magic", "version", "sender", "ephemeral", "ciphertext", "tag"])
def test_open_report__one_bit_flipped__raises(position):
    sealed = bytearray(seal())
    index = {"magic": 0, "version": 2, "sender": 10, "ephemeral": 40, "ciphertext": 70, "tag": len(sealed) - 1}[position]
    sealed[index] ^= 0x01

    with pytest.raises((WrongKey, ReportInvalid)) as info:
        open_report(bytes(sealed), RECIPIENT, context())

    _one_line(info.value)


@pytest.mark.parametrize("cut", [1, 16, 17, 60])
def test_open_report__truncated__raises(cut):
    with pytest.raises((WrongKey, ReportInvalid)) as info:
        open_report(seal()[:-cut], RECIPIENT, context())

    _one_line(info.value)


@pytest.mark.parametrize(
    "changed",
    [dict(chain_id=1), dict(market="0x" + "6d" * 20), dict(task_id=8), dict(requester="0x" + "40" * 20)],
    ids=["chain", "market", "task", "requester"],
)
def test_open_report__another_context__raises_wrongkey(changed):
    with pytest.raises(WrongKey):
        open_report(seal(), RECIPIENT, context(**changed))


def test_open_report__another_recipient__raises_wrongkey():
    with pytest.raises(WrongKey):
        open_report(seal(), KeyPair.generate(), context())


def test_open_report__context_names_another_sender__raises_wrongkey():
    with pytest.raises(WrongKey, match="another sender key"):
        open_report(seal(), RECIPIENT, context(sender=KeyPair.generate()))


def test_open_report__sender_key_rewritten_with_matching_context__raises_wrongkey():
    """A forger who rewrites the sender key field (and names it in the context) lacks its private half."""
    impostor = KeyPair.generate()
    sealed = seal()
    forged = sealed[:3] + impostor.public_bytes + sealed[35:]

    with pytest.raises(WrongKey):
        open_report(forged, RECIPIENT, context(sender=impostor))


def test_open_report__degenerate_sender_key__raises_wrongkey():
    sealed = seal()
    forged = sealed[:3] + bytes(32) + sealed[35:]

    with pytest.raises(WrongKey, match="degenerate"):
        open_report(forged, RECIPIENT, context().with_sender(bytes(32)))


@pytest.mark.parametrize(
    "sealed, message",
    [
        (b"", "not an iChain failure report"),
        (b"IC\x03" + bytes(100), "not an iChain failure report"),
        (b"IR\x02" + bytes(200), "version 2"),
        (b"IR\x01" + bytes(40), "malformed"),
        (b"IR\x01" + bytes(1022), "malformed"),
        ("IR\x01", "is bytes"),
        (None, "is bytes"),
    ],
    ids=["empty", "envelope", "version", "short", "oversize", "str", "none"],
)
def test_open_report__foreign_input__raises_one_line_reportinvalid(sealed, message):
    with pytest.raises(ReportInvalid, match=message) as info:
        open_report(sealed, RECIPIENT, context())

    _one_line(info.value)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"exit_code": 1, "stage": "execute"}',
        b'{"exit_code": 1, "stage": "execute", "stderr_tail": "", "extra": 1}',
        b'{"exit_code": 1, "exit_code": 2, "stage": "execute", "stderr_tail": ""}',
        b'{"exit_code": true, "stage": "execute", "stderr_tail": ""}',
        b'{"exit_code": 1.5, "stage": "execute", "stderr_tail": ""}',
        b'{"exit_code": 99999999999, "stage": "execute", "stderr_tail": ""}',
        b'{"exit_code": 1, "stage": "deploy", "stderr_tail": ""}',
        b'{"exit_code": 1, "stage": "execute", "stderr_tail": ["x"]}',
        b"[" * 900,
    ],
    ids=["text", "utf8", "array", "missing", "extra", "duplicate", "bool", "float", "range", "stage", "tail-type",
         "nesting"],
)
def test_open_report__hostile_sender_malformed_contents__raises_reportinvalid(plaintext):
    sealed = _seal(RECIPIENT.public_bytes, context(), plaintext, PROVIDER)

    with pytest.raises(ReportInvalid) as info:
        open_report(sealed, RECIPIENT, context())

    _one_line(info.value)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(exit_code=True), ReportInvalid),
        (dict(exit_code=2**32), ReportInvalid),
        (dict(exit_code="1"), ReportInvalid),
        (dict(stage="build"), ReportInvalid),
        (dict(stderr=42), ReportInvalid),
        (dict(ctx=context(role="result-requester")), ContextInvalid),
        (dict(ctx=context(sender=KeyPair.generate())), ContextInvalid),
    ],
    ids=["bool", "range", "str-exit", "stage", "stderr-type", "role", "sender-mismatch"],
)
def test_seal_report__bad_arguments__raise_one_line(kwargs, error):
    with pytest.raises(error) as info:
        seal(**kwargs)

    _one_line(info.value)


def test_seal_report__degenerate_recipient__raises_publickeyinvalid():
    with pytest.raises(PublicKeyInvalid):
        seal_report(bytes(32), context(), 1, "execute", "x", PROVIDER)


def test_seal_report__same_report_twice__unlinkable():
    first, second = seal(), seal()

    assert first != second and first[35:67] != second[35:67]
    assert b"boom" not in first


# --- display ------------------------------------------------------------------------------------
def test_failurereport_display__hostile_stderr__neutralised_headline_and_tail():
    hostile = "\x1b]52;c;cm0gLXJmIH4=\x07progress\r\x1b[2K\nValueError: \u202eboom\x1b[0m\n"
    report = open_report(seal(hostile, exit_code=2), RECIPIENT, context())

    shown = report.display()

    assert shown.splitlines()[0] == "execute failed with exit code 2: ValueError: \\u202eboom\\x1b[0m"
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown and "\u202e" not in shown
    assert "\\x1b]52;c;cm0gLXJmIH4=\\x07progress\\r\\x1b[2K" in shown

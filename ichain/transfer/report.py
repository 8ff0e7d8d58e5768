"""The failure report a provider seals to the requester when a task fails (``TaskMarket.reportFailure``).

It goes on chain, so it is small (at most :data:`MAX_REPORT` bytes, the contract's limit) and sealed: only
the requester reads the exit code and the stderr tail of its own script.

Construction (the transfer layer's HKDF-SHA256 and AES-256-GCM, in HPKE's auth mode): the provider draws an
ephemeral X25519 key ``e``; ``shared = X25519(e, R) || X25519(s, R)`` with ``s`` the provider's own key, so
the report opens only for the recipient ``R`` and only under the sender key written in it (whoever made it
holds that key's private half). The key comes from HKDF with
``salt = SHA256("ichain/report/v1/salt" || e.pub || R || s.pub)`` and an ``info`` that holds the
:class:`~ichain.transfer.crypto.TransferContext` (role ``"failure-report"``: chain, market, task id,
requester, sender key). A fresh ``e`` per report makes the all-zero nonce safe.

Layout (version 1): ``b"IR" | version (1) | sender key (32) | e.pub (32) | AES-GCM(JSON) (+ 16-byte tag)``;
the associated data is the header and ``R`` and the context. The plaintext is
``{"exit_code": int, "stage": "execute" | "validate" | "refused", "stderr_tail": str}`` (compact UTF-8 JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ichain.text import neutralize, one_line
from ichain.transfer.crypto import TAG_SIZE, KeyPair, TransferContext, _exchange, _hkdf
from ichain.transfer.errors import ContextInvalid, PublicKeyInvalid, ReportInvalid, WrongKey

MAGIC = b"IR"
VERSION = 1
ROLE = "failure-report"
# "refused": the task could not run through its requester's doing (locator, hosting, archive, limits)
STAGES = ("execute", "validate", "refused")
MAX_REPORT = 1024  # TaskMarket: a report is 1..1024 bytes
_HEADER = len(MAGIC) + 1 + 32 + 32
MAX_PLAINTEXT = MAX_REPORT - _HEADER - TAG_SIZE
_EXIT_MIN, _EXIT_MAX = -(2**31), 2**32 - 1  # negative: killed by a signal (subprocess); 0..255 usual
_ZERO_NONCE = bytes(12)
_KEYS = {"exit_code", "stage", "stderr_tail"}


@dataclass(frozen=True)
class FailureReport:
    """An opened failure report. Every text field is the provider's (and the script's) raw text: show it
    through :func:`ichain.text.neutralize` (or :meth:`display`), never as is.

    Attributes:
        exit_code: The script's exit code (non-zero; negative when killed by a signal).
        stage: ``"execute"`` (the task's run failed), ``"validate"`` (the provider's pre-check rejected) or
            ``"refused"`` (the task could not run through its requester's doing: locator, hosting, archive, limits).
        stderr_tail: The last part of the script's stderr (cut from the front to fit the report).
        error_line: The last non-empty line of the tail (the script's error, e.g. ``"ValueError: boom"``).
        sender_key: The X25519 key the report was sealed under (the provider's).
    """

    exit_code: int
    stage: str
    stderr_tail: str
    error_line: str
    sender_key: bytes

    def display(self, limit: int = 4000) -> str:
        """Neutralised text for a terminal: a headline with the error line, then the stderr tail."""
        if self.stage == "refused":
            headline = "the provider could not run the task"
        else:
            headline = f"{self.stage} failed with exit code {self.exit_code}"
        if self.error_line:
            headline += ": " + one_line(self.error_line, 300)
        tail = neutralize(self.stderr_tail.rstrip(), limit, tail=True)
        return headline + ("\n" + tail if tail else "")


def _check_context(context: TransferContext) -> None:
    if not isinstance(context, TransferContext):
        raise ContextInvalid(f"context must be a TransferContext, got {type(context).__name__}")
    if context.role != ROLE:
        raise ContextInvalid(f"a failure report's context has role {ROLE!r}, got {context.role!r}")


def _key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes, context: TransferContext) -> bytes:
    salt = hashlib.sha256(b"ichain/report/v1/salt" + ephemeral_public + recipient_public + context.sender_key).digest()
    return _hkdf(shared, salt, b"ichain/report/v1/key", context.to_bytes())


def _plaintext(exit_code: int, stage: str, stderr_tail: str) -> bytes:
    body = {"exit_code": exit_code, "stage": stage, "stderr_tail": stderr_tail}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _fit(exit_code: int, stage: str, stderr_tail: str) -> bytes:
    """The plaintext with as much of the tail's end as fits in :data:`MAX_PLAINTEXT` bytes."""
    tail = stderr_tail[-MAX_PLAINTEXT:]  # every character takes at least one byte
    if len(_plaintext(exit_code, stage, tail)) <= MAX_PLAINTEXT:
        return _plaintext(exit_code, stage, tail)
    low, high = 0, len(tail)  # the longest suffix that fits: JSON length grows with the suffix
    while low < high:
        middle = (low + high + 1) // 2
        if len(_plaintext(exit_code, stage, tail[len(tail) - middle :])) <= MAX_PLAINTEXT:
            low = middle
        else:
            high = middle - 1
    return _plaintext(exit_code, stage, tail[len(tail) - low :])


def seal_report(
    recipient_public: bytes,
    context: TransferContext,
    exit_code: int,
    stage: str,
    stderr_tail: str | bytes,
    sender: KeyPair,
) -> bytes:
    """Seal a failure report to the requester; the bytes for ``TaskMarket.reportFailure``.

    Args:
        recipient_public: The requester's 32-byte X25519 key (from its TaskPosted envelope).
        context: Role ``"failure-report"``, the real task id, the task's requester, and
            ``sender_key=sender.public_bytes``.
        exit_code: The script's exit code.
        stage: ``"execute"``, ``"validate"`` or ``"refused"``.
        stderr_tail: The script's stderr (or its end); ``bytes`` are decoded as UTF-8 with replacement.
            Cut from the front so the report fits in :data:`MAX_REPORT` bytes.
        sender: The provider's key pair (the report opens only under its public key).

    Returns:
        At most :data:`MAX_REPORT` bytes.

    Raises:
        ContextInvalid: Not a failure-report context, or its sender key is not ``sender``'s.
        ReportInvalid: The exit code or stage is out of range.
        PublicKeyInvalid: The recipient key is malformed or degenerate.
    """
    _check_context(context)
    if not isinstance(sender, KeyPair):
        raise ContextInvalid(f"sender must be a KeyPair, got {type(sender).__name__}")
    if context.sender_key != sender.public_bytes:
        raise ContextInvalid("the context's sender key is not the sender's public key")
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not _EXIT_MIN <= exit_code <= _EXIT_MAX:
        raise ReportInvalid(f"exit code must be an integer in {_EXIT_MIN}..{_EXIT_MAX}, got {exit_code!r:.40}")
    if stage not in STAGES:
        raise ReportInvalid(f"stage must be one of {', '.join(STAGES)}, got {stage!r:.40}")
    if isinstance(stderr_tail, (bytes, bytearray, memoryview)):
        stderr_tail = bytes(stderr_tail).decode("utf-8", errors="replace")
    if not isinstance(stderr_tail, str):
        raise ReportInvalid(f"stderr tail must be text or bytes, got {type(stderr_tail).__name__}")
    # Lone surrogates (surrogateescape'd bytes) have no UTF-8 form: replace them rather than fail.
    stderr_tail = stderr_tail.encode("utf-8", errors="replace").decode("utf-8")
    return _seal(recipient_public, context, _fit(exit_code, stage, stderr_tail), sender)


def _seal(recipient_public: bytes, context: TransferContext, plaintext: bytes, sender: KeyPair) -> bytes:
    """Seal ``plaintext`` as a report (the checks on the fields are the caller's)."""
    if isinstance(recipient_public, (bytearray, memoryview)):
        recipient_public = bytes(recipient_public)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = _exchange(ephemeral, recipient_public) + sender.exchange(recipient_public)
    header = MAGIC + bytes([VERSION]) + sender.public_bytes + ephemeral_public
    key = _key(shared, ephemeral_public, recipient_public, context)
    sealed = AESGCM(key).encrypt(_ZERO_NONCE, plaintext, header + recipient_public + context.to_bytes())
    return header + sealed


def _check_shape(sealed: object) -> bytes:
    if not isinstance(sealed, (bytes, bytearray, memoryview)):
        raise ReportInvalid(f"a sealed failure report is bytes, got {type(sealed).__name__}")
    sealed = bytes(sealed)
    if len(sealed) < len(MAGIC) + 1 or sealed[: len(MAGIC)] != MAGIC:
        raise ReportInvalid("not an iChain failure report")
    if sealed[len(MAGIC)] != VERSION:
        raise ReportInvalid(f"failure report version {sealed[len(MAGIC)]} is not supported (expected {VERSION})")
    if not _HEADER + TAG_SIZE < len(sealed) <= MAX_REPORT:
        raise ReportInvalid(f"a failure report of {len(sealed)} bytes is malformed (truncated or oversized)")
    return sealed


def report_sender(sealed: bytes) -> bytes:
    """The sender key written in a sealed report (not yet authenticated: :func:`open_report` checks it).

    For a recipient that does not know the provider's key: build the context with it, then open; the
    report opens only if it was sealed by the holder of that key.

    Raises:
        ReportInvalid: Not a failure report of this version, or malformed.
    """
    sealed = _check_shape(sealed)
    return sealed[len(MAGIC) + 1 : len(MAGIC) + 33]


def open_report(sealed: bytes, keypair: KeyPair, context: TransferContext) -> FailureReport:
    """Open a failure report with the requester's key pair and the expected context.

    Args:
        sealed: The ``report`` of the TaskFailed event.
        keypair: The requester's key pair.
        context: Role ``"failure-report"``, the event's task id and requester, and the provider's key as
            ``sender_key`` (known, or read with :func:`report_sender`).

    Raises:
        ReportInvalid: Malformed, another version, or its contents are not a report.
        WrongKey: Sealed to another key, in another context, by another sender key, or altered.
        ContextInvalid: Not a failure-report context.
    """
    sealed = _check_shape(sealed)
    _check_context(context)
    sender_key, ephemeral_public = sealed[3:35], sealed[35:67]
    if sender_key != context.sender_key:
        raise WrongKey("the failure report was sealed under another sender key than the context names")
    try:
        shared = keypair.exchange(ephemeral_public) + keypair.exchange(sender_key)
    except PublicKeyInvalid:
        raise WrongKey("the failure report does not open with this key and context (degenerate key)") from None
    key = _key(shared, ephemeral_public, keypair.public_bytes, context)
    try:
        plaintext = AESGCM(key).decrypt(_ZERO_NONCE, sealed[_HEADER:], sealed[:_HEADER] + keypair.public_bytes
                                        + context.to_bytes())
    except InvalidTag:
        raise WrongKey("the failure report does not open with this key and context (not ours, or altered)") from None
    exit_code, stage, tail = _parse(plaintext)
    error_line = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    return FailureReport(exit_code, stage, tail, error_line, sender_key)


def _parse(plaintext: bytes) -> tuple[int, str, str]:
    """The report's fields; authenticated, but the sender may be hostile: check the structure strictly."""

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ReportInvalid("the failure report repeats a field")
        return dict(pairs)

    try:
        body = json.loads(plaintext.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReportInvalid("the failure report's contents are not JSON") from None
    if not isinstance(body, dict) or set(body) != _KEYS:
        raise ReportInvalid("the failure report's fields are not exit_code, stage, stderr_tail")
    exit_code, stage, tail = body["exit_code"], body["stage"], body["stderr_tail"]
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not _EXIT_MIN <= exit_code <= _EXIT_MAX:
        raise ReportInvalid("the failure report's exit code is not an integer in range")
    if stage not in STAGES:
        raise ReportInvalid("the failure report's stage is not execute, validate or refused")
    if not isinstance(tail, str):
        raise ReportInvalid("the failure report's stderr tail is not text")
    return exit_code, stage, tail

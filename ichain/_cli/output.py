"""How commands print their result: a human text, or with ``--json`` one JSON document on stdout.

Every command that prints a result takes ``--json`` (:func:`ichain._cli.options.json_option`) and ends with
:func:`emit`, so the JSON form is always exactly one document on stdout (progress and notes go to stderr) with
the keys documented in the README's "Machine-readable output" section.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click


def _default(value: Any) -> Any:
    """JSON for the few non-JSON values results hold (paths, enums, bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    name = getattr(value, "name", None)
    if isinstance(name, str) and hasattr(value, "value"):  # an Enum member
        return name
    return str(value)


def emit(data: Any, *, as_json: bool, text: Callable[[], None] | str | None = None) -> None:
    """Print a command's result.

    Args:
        data: The result as JSON-able data (dicts, lists, numbers in wei, strings).
        as_json: Print ``data`` as one JSON document instead of the text form.
        text: The text form: a string to echo, or a function that prints it; ``None`` prints nothing.
    """
    if as_json:
        click.echo(json.dumps(data, default=_default, sort_keys=False))
    elif callable(text):
        text()
    elif text is not None:
        click.echo(text)


def note(message: str) -> None:
    """A line for the person at the terminal that is not part of the result (stderr, so ``--json`` stays clean)."""
    click.echo(message, err=True)


def step_echo(as_json: bool) -> Callable[[str], None]:
    """Where a command's step lines go: stdout for a person, stderr with ``--json`` (stdout holds the result)."""
    return note if as_json else click.echo

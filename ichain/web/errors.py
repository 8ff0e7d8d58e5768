"""Errors the web page shows to its user (one line each, like every IChainError)."""

from ichain.errors import IChainError


class WebError(IChainError):
    """Base of the web page's own user-facing errors."""


class WebInputError(WebError):
    """A form field holds something that can't be used (the message names the field)."""


class NoAccount(WebError):
    """The server was started without an account, so it cannot sign anything."""

    def __init__(self) -> None:
        super().__init__(
            "No account selected: restart the page with `ape ichain web --account ALIAS` "
            "(create one with `ape ichain account new`)"
        )


class UnknownTask(WebError):
    """The page was asked about a task this server does not follow."""

    def __init__(self, task_id: object) -> None:
        super().__init__(f"Task {task_id} was not submitted from this page (see `ape ichain status {task_id}`)")


class NotReady(WebError):
    """An action was asked for before the task reached the state it needs."""

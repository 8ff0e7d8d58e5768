"""The base of every user-facing error in iChain.

Every error a user can cause (bad input, a doomed transaction, a missing engine) is an
``IChainError`` whose ``str()`` is one line that says what is wrong and, where possible, what to do.
The CLI turns these into clean aborts; the web page shows the same line.
"""


class IChainError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

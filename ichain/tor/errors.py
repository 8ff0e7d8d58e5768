"""User-facing errors of the Tor transport (one line each, see :mod:`ichain.errors`)."""


from ichain.transfer.errors import TransportError


class TorError(TransportError):
    """Base of every Tor transport error (a TransportError, so the transfer layer handles it too)."""


class TorNotFound(TorError):
    """The tor executable (or tor-gencert for the private network) is not installed."""


class TorStartError(TorError):
    """A tor process did not start or did not bootstrap within its deadline."""


class TorControlError(TorError):
    """The control port/socket of a running tor could not be reached or authenticated."""


class PublicationTimeout(TorError):
    """An onion service was not published (or not reachable) after every retry."""


class OnionUnreachable(TorError):
    """An onion service could not be reached through tor's SOCKS port."""


class TorConfigError(TorError):
    """Bad Tor transport options (unknown transport name, conflicting settings...)."""

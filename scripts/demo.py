"""``ape run demo``: a whole marketplace round on this machine (same command as ``ape ichain demo``)."""

from ichain._cli.demo import demo as cli  # noqa: F401  (ape run looks for `cli`)

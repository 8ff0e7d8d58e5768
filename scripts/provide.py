"""``ape run provide``: the provider daemon (same command as ``ape ichain provide``)."""

from ichain._cli.provide import provide as cli  # noqa: F401  (ape run looks for `cli`)

"""Ape's entry into the iChain plugin.

Ape finds plugins by their distribution name (``ape-ichain``) and imports the matching top-level module
(``ape_ichain``): this one. It registers the ``ichain:`` section of ape-config.yaml as a settings class, so Ape
validates it and ``APE_ICHAIN_*`` environment variables override it. The package itself is :mod:`ichain`, and the
``ape ichain`` commands come from the ``ape_cli_subcommands`` entry point.
"""

from ape import plugins


@plugins.register(plugins.Config)
def config_class() -> type:
    from ichain.config import IChainSettings

    return IChainSettings

"""The ``ape ichain`` command group (an Ape CLI plugin).

Each command group lives in its own module; shared options are in ``_cli/options.py``.
"""

import click

from ichain._cli.sandbox import sandbox


@click.group(name="ichain")
def cli():
    """iChain: a peer-to-peer marketplace for machine-learning compute."""


cli.add_command(sandbox)

"""The ``ape ichain`` command group (an Ape CLI plugin).

Each command group lives in its own module; shared options are in ``_cli/options.py``.
"""

import click

from ichain._cli.account import account
from ichain._cli.demo import demo
from ichain._cli.deploy import deploy
from ichain._cli.market import pools, providers, validators, withdraw
from ichain._cli.provide import provide
from ichain._cli.provider import provider
from ichain._cli.request import rate, refund, status, submit
from ichain._cli.sandbox import sandbox
from ichain._cli.web import web


@click.group(name="ichain")
def cli():
    """iChain: a peer-to-peer marketplace for machine-learning compute."""


for command in (sandbox, provide, submit, status, pools, providers, validators, rate, refund, withdraw, account, demo,
                web, deploy):
    cli.add_command(command)
cli.add_command(provider)

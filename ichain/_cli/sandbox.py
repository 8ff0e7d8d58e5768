"""``ape ichain sandbox``: build and check the Docker sandbox (filled in by the sandbox work)."""

import click


@click.group()
def sandbox():
    """Build and check the Docker sandbox that runs tasks."""

"""``ape ichain sandbox``: build and check the Docker sandbox that runs tasks."""

from __future__ import annotations

import click

from ichain.errors import IChainError


@click.group()
def sandbox():
    """Build and check the Docker sandbox that runs tasks."""


@sandbox.command()
@click.option("--quiet", is_flag=True, help="Print nothing when the image is already up to date.")
@click.option("--force", is_flag=True, help="Rebuild even when the image matches its recipe.")
def build(quiet: bool, force: bool):
    """Build the runtime image (ichain-runtime) locally; does nothing when it is up to date."""
    from ichain.sandbox import RUNTIME_IMAGE, build_image, docker_client

    try:
        status = build_image(docker_client(), RUNTIME_IMAGE, force=force, log=click.echo)
    except IChainError as exc:
        raise click.ClickException(str(exc)) from None
    if not status.built and not quiet:
        click.echo(f"image: {status.name} is up to date ({status.size / 1e6:.0f} MB, recipe {status.recipe[:12]})")


@sandbox.command()
def check():
    """Report the Docker engine, the runtime image and the container runtime (runc or gVisor)."""
    from ichain.sandbox import RUNTIME_IMAGE, docker_client, image_status
    from ichain.sandbox.engine import engine_report
    from ichain.sandbox.image import recipe_hash
    from ichain.sandbox.runner import Sandbox, leftover_containers, sweep_orphans

    try:
        client = docker_client()
        engine = engine_report(client)
        click.echo(
            f"engine: Docker {engine['server_version']} (cgroup v{engine['cgroup_version']}, "
            f"{engine['cgroup_driver']}), runtimes: {', '.join(engine['runtimes'])}"
        )
        status = image_status(client, RUNTIME_IMAGE)
        if not status.present:
            raise click.ClickException(f"image: {RUNTIME_IMAGE} missing — run 'ape ichain sandbox build'")
        state = "up to date" if status.up_to_date else f"stale (recipe {status.recipe[:12]} != {recipe_hash()[:12]})"
        click.echo(f"image: {RUNTIME_IMAGE} {status.size / 1e6:.0f} MB, {state}")
        box = Sandbox(client=client)
        click.echo(f"runtime: {box.runtime}" + ("" if box.runtime == "runsc" else " (gVisor runsc not configured)"))
        result = box.self_test()
        if not result.ok:
            raise click.ClickException(f"self-test: failed ({result.error or result.stderr_tail[-200:]})")
        click.echo(f"self-test: hardened container ran python3 + numpy + scikit-learn in {result.wall_time:.2f} s")
        removed = sweep_orphans(client)
        click.echo(
            f"containers: {len(leftover_containers(client))} sandbox container(s) on the engine now"
            + (f", {removed} left by dead processes removed" if removed else "")
        )
        if not status.up_to_date:
            raise click.ClickException("image is stale — run 'ape ichain sandbox build'")
    except IChainError as exc:
        raise click.ClickException(str(exc)) from None

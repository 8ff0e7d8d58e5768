"""``ape ichain sandbox``: build and check the Docker sandbox that runs tasks."""

from __future__ import annotations

from typing import Any

import click

from ichain._cli.options import IChainLocalCommand, json_option
from ichain._cli.output import emit, step_echo


@click.group()
def sandbox():
    """Build and check the Docker sandbox that runs tasks."""


def _image_json(status: Any) -> dict[str, Any]:
    return {"name": status.name, "present": status.present, "up_to_date": status.up_to_date, "size": status.size,
            "recipe": status.recipe}


@sandbox.command(cls=IChainLocalCommand)
@click.option("--quiet", is_flag=True, help="Print nothing when the image is already up to date.")
@click.option("--force", is_flag=True, help="Rebuild even when the image matches its recipe.")
@json_option()
def build(quiet: bool, force: bool, as_json: bool):
    """Build the runtime image (ichain-runtime) locally; does nothing when it is up to date.

    JSON: ``name``, ``present``, ``up_to_date``, ``size`` (bytes), ``recipe``, ``built``; build steps go to stderr.
    """
    from ichain.sandbox import RUNTIME_IMAGE, build_image, docker_client

    status = build_image(docker_client(), RUNTIME_IMAGE, force=force, log=step_echo(as_json))
    text = (None if status.built or quiet else
            f"image: {status.name} is up to date ({status.size / 1e6:.0f} MB, recipe {status.recipe[:12]})")
    emit({**_image_json(status), "built": status.built}, as_json=as_json, text=text)


@sandbox.command(cls=IChainLocalCommand)
@json_option()
def check(as_json: bool):
    """Report the Docker engine, the runtime image and the container runtime (runc or gVisor).

    JSON: ``engine`` (``server_version``, ``cgroup_version``, ``cgroup_driver``, ``runtimes``), ``image`` (the keys
    of ``sandbox build`` but ``built``), ``runtime``, ``self_test`` (``ok``, ``wall_time`` in s), ``containers``,
    ``removed``. A failed check is an error (exit 1), as in the text form.
    """
    from ichain.sandbox import RUNTIME_IMAGE, docker_client, image_status
    from ichain.sandbox.engine import engine_report
    from ichain.sandbox.image import recipe_hash
    from ichain.sandbox.runner import Sandbox, leftover_containers, sweep_orphans

    echo = step_echo(as_json)
    client = docker_client()
    engine = engine_report(client)
    echo(
        f"engine: Docker {engine['server_version']} (cgroup v{engine['cgroup_version']}, "
        f"{engine['cgroup_driver']}), runtimes: {', '.join(engine['runtimes'])}"
    )
    status = image_status(client, RUNTIME_IMAGE)
    if not status.present:
        raise click.ClickException(f"image: {RUNTIME_IMAGE} missing — run 'ape ichain sandbox build'")
    state = "up to date" if status.up_to_date else f"stale (recipe {status.recipe[:12]} != {recipe_hash()[:12]})"
    echo(f"image: {RUNTIME_IMAGE} {status.size / 1e6:.0f} MB, {state}")
    box = Sandbox(client=client)
    echo(f"runtime: {box.runtime}" + ("" if box.runtime == "runsc" else " (gVisor runsc not configured)"))
    result = box.self_test()
    if not result.ok:
        raise click.ClickException(f"self-test: failed ({result.error or result.stderr_tail[-200:]})")
    echo(f"self-test: hardened container ran python3 + numpy + scikit-learn in {result.wall_time:.2f} s")
    removed = sweep_orphans(client)
    containers = len(leftover_containers(client))
    echo(f"containers: {containers} sandbox container(s) on the engine now"
         + (f", {removed} left by dead processes removed" if removed else ""))
    if not status.up_to_date:
        raise click.ClickException("image is stale — run 'ape ichain sandbox build'")
    emit({"engine": {k: engine[k] for k in ("server_version", "cgroup_version", "cgroup_driver", "runtimes")},
          "image": _image_json(status), "runtime": box.runtime,
          "self_test": {"ok": result.ok, "wall_time": round(float(result.wall_time), 3)},
          "containers": containers, "removed": removed}, as_json=as_json)

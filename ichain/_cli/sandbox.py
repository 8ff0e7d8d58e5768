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


def _build_json(status: Any) -> dict[str, Any]:
    return {**_image_json(status), "built": status.built, "seconds": round(float(status.seconds), 1)}


def _runtime_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ichain.sandbox.runtimes import get_runtime, runtime_names

    if value is not None and get_runtime(value) is None:
        raise click.BadParameter(f"unknown runtime {value!r} (known: {', '.join(runtime_names())})", ctx=ctx,
                                 param=param)
    return value


@sandbox.command(cls=IChainLocalCommand)
@click.argument("name", required=False, callback=_runtime_name)
@click.option("--all", "build_all", is_flag=True, help="Build every runtime of the catalog, one after the other.")
@click.option("--quiet", is_flag=True, help="Print nothing for an image that is already up to date.")
@click.option("--force", is_flag=True, help="Rebuild even when the image matches its recipe.")
@json_option()
def build(name: str | None, build_all: bool, quiet: bool, force: bool, as_json: bool):
    """Build a runtime image locally (NAME, default ichain-runtime; --all: every one); up-to-date ones are kept.

    The runtimes: ichain-runtime (python3, numpy, scipy, scikit-learn) and ichain-torch (the same plus PyTorch,
    torchvision and pandas, CPU builds); docs/TASKS.md lists what each holds.

    JSON: one object for one image: ``name``, ``present``, ``up_to_date``, ``size`` (bytes), ``recipe``, ``built``,
    ``seconds`` (the build's, 0 when nothing was built); with ``--all`` a list of such objects, in catalog order.
    Build steps go to stderr.
    """
    from ichain.sandbox import RUNTIME_IMAGE, build_image, docker_client
    from ichain.sandbox.runtimes import runtime_names

    if name and build_all:
        raise click.UsageError("give a runtime NAME or --all, not both")
    client = docker_client()
    rows = []
    for runtime in runtime_names() if build_all else (name or RUNTIME_IMAGE,):
        status = build_image(client, runtime, force=force, log=step_echo(as_json))
        if not (status.built or quiet or as_json):
            click.echo(f"image: {status.name} is up to date ({status.size / 1e6:.0f} MB, recipe {status.recipe[:12]})")
        rows.append(_build_json(status))
    emit(rows if build_all else rows[0], as_json=as_json)


@sandbox.command(cls=IChainLocalCommand)
@json_option()
def check(as_json: bool):
    """Report the Docker engine, every runtime image, GPU support and the container runtime (runc or gVisor).

    ichain-runtime must be there and up to date; another runtime's image may be missing (a provider builds the
    ones it offers) but not stale. Each image present runs its smoke test in a hardened container.

    JSON: ``engine`` (``server_version``, ``cgroup_version``, ``cgroup_driver``, ``runtimes``), ``image`` (the keys
    of ``sandbox build`` but ``built`` and ``seconds``, for ichain-runtime), ``images`` (one such object per
    catalog runtime, plus ``self_test``: ``ok``, ``wall_time``, or null when the image is missing), ``runtime``,
    ``gpus`` (the engine can pass GPUs), ``self_test`` (ichain-runtime's: ``ok``, ``wall_time`` in s),
    ``containers``, ``removed``. A failed check is an error (exit 1), as in the text form.
    """
    from ichain.sandbox import RUNTIME_IMAGE, docker_client, image_status
    from ichain.sandbox.engine import engine_report
    from ichain.sandbox.image import recipe_hash
    from ichain.sandbox.runner import Sandbox, leftover_containers, sweep_orphans
    from ichain.sandbox.runtimes import runtime_names

    echo = step_echo(as_json)
    client = docker_client()
    engine = engine_report(client)
    echo(
        f"engine: Docker {engine['server_version']} (cgroup v{engine['cgroup_version']}, "
        f"{engine['cgroup_driver']}), runtimes: {', '.join(engine['runtimes'])}"
    )
    box = Sandbox(client=client)
    statuses = {name: image_status(client, name) for name in runtime_names()}
    if not statuses[RUNTIME_IMAGE].present:
        raise click.ClickException(f"image: {RUNTIME_IMAGE} missing — run 'ape ichain sandbox build'")
    for name, status in statuses.items():
        if not status.present:
            echo(f"image: {name} missing — run 'ape ichain sandbox build {name}' to offer it")
            continue
        state = "up to date" if status.up_to_date else f"stale (recipe {status.recipe[:12]} != {recipe_hash(name)[:12]})"
        echo(f"image: {name} {status.size / 1e6:.0f} MB, {state}")
    echo(f"runtime: {box.runtime}" + ("" if box.runtime == "runsc" else " (gVisor runsc not configured)"))
    gpus = box.gpu_support()
    echo("gpus: " + ("the engine passes NVIDIA GPUs" if gpus else "none (no NVIDIA container runtime on this engine)"))
    tests: dict[str, Any] = {}
    for name, status in statuses.items():
        if not status.present:
            continue
        result = box.self_test(name)
        if not result.ok:
            raise click.ClickException(f"self-test: {name} failed ({result.error or result.stderr_tail[-200:]})")
        tests[name] = {"ok": result.ok, "wall_time": round(float(result.wall_time), 3)}
        echo(f"self-test: hardened container ran {name}'s stack in {result.wall_time:.2f} s")
    removed = sweep_orphans(client)
    containers = len(leftover_containers(client))
    echo(f"containers: {containers} sandbox container(s) on the engine now"
         + (f", {removed} left by dead processes removed" if removed else ""))
    stale = [name for name, status in statuses.items() if status.present and not status.up_to_date]
    if stale:
        raise click.ClickException(f"image {', '.join(stale)} is stale — run 'ape ichain sandbox build --all'")
    emit({"engine": {k: engine[k] for k in ("server_version", "cgroup_version", "cgroup_driver", "runtimes")},
          "image": _image_json(statuses[RUNTIME_IMAGE]),
          "images": [{**_image_json(status), "self_test": tests.get(name)} for name, status in statuses.items()],
          "runtime": box.runtime, "gpus": gpus, "self_test": tests[RUNTIME_IMAGE],
          "containers": containers, "removed": removed}, as_json=as_json)

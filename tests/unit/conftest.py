"""Fixtures shared by the unit tests: the real Docker engine; the node's URI and a market for the CLI tests."""

import docker
import pytest

from ichain.sandbox.image import image_status


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    """The real Docker engine (tests that use it are skipped without one; make test always starts it)."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception:
        pytest.skip("no Docker engine")
    if not image_status(client).present:
        pytest.skip("runtime image missing: run 'ape ichain sandbox build'")
    return client


@pytest.fixture(scope="module")
def node(chain):
    """HTTP URI of the session's anvil (CLI subprocesses join it with --network URI)."""
    return getattr(chain.provider, "http_uri", None) or chain.provider.uri


@pytest.fixture(scope="module")
def cli_market(accounts):
    """A market of the CLI tests' own, with short windows, not recorded in any registry."""
    from ichain.deployments import deploy

    return deploy(accounts[9], validation_window=60, min_timeout=30, max_timeout=3600, save=False)

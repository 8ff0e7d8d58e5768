"""Fixtures shared by the unit tests that need the real Docker engine."""

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

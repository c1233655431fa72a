"""The embedded services' credentials are made once, with the services: a command run from another
folder (no `.callscribe/` there) while a profile's services run must not make new ones, which the
running services reject ("password authentication failed"), but say where to run it from."""

from __future__ import annotations

import socket

import pytest

from callscribe.dev import services


def test_no_new_secrets_beside_running_services(tmp_path):
    with socket.socket() as held:  # the profile's database port, taken by services started elsewhere
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = services.Profile("dev", tmp_path / ".callscribe" / "dev", port, 1, 2)
        with pytest.raises(RuntimeError, match="CALLSCRIBE_HOME"):
            services.environment(p)
    assert not (p.root / "secrets.json").exists()


def test_secrets_are_made_when_nothing_runs(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    p = services.Profile("dev", tmp_path / ".callscribe" / "dev", port, 1, 2)
    env = services.environment(p)
    assert (p.root / "secrets.json").exists() and env

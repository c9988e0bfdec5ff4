"""free_port(): ports for the local stack's servers, chosen where no outgoing connection can
take them before the server binds (below the kernel's ephemeral range), never twice."""

from __future__ import annotations

import socket

from copilot_dev import localstack
from copilot_dev.localstack import free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low = localstack._ephemeral_low()
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == 100
    if low > localstack.LOWEST_PORT + 1000:
        assert all(localstack.LOWEST_PORT <= p < low for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # still free: a server can take it


def test_a_port_with_a_listener_is_never_chosen() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not localstack._bindable(taken)

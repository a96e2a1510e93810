"""The local stack survives a port taken between choosing and binding it."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest

from devstack.processes import free_port, start_on_free_ports


@dataclass
class _Server:
    """A stand-in server that binds its two ports, as a real one would."""

    name: str = "stand-in"
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    sockets: list[socket.socket] = field(default_factory=list)
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        for port in (self.port, self.admin_port):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                s.close()
                raise RuntimeError(f"Port {port} seems to be in use by another process") from exc
            self.sockets.append(s)

    def stop(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()


def test_ports_are_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_taken_port_is_replaced_and_the_start_repeated_once() -> None:
    server = _Server()
    thief = socket.socket()
    thief.bind(("127.0.0.1", server.admin_port))
    taken = server.admin_port
    try:
        start_on_free_ports(server)
        assert server.starts == 2
        assert server.admin_port != taken and len(server.sockets) == 2
    finally:
        server.stop()
        thief.close()


def test_a_failure_that_is_not_a_port_is_raised() -> None:
    class Broken(_Server):
        def start(self) -> None:
            self.starts += 1
            raise RuntimeError("no such binary")

    server = Broken()
    with pytest.raises(RuntimeError, match="no such binary"):
        start_on_free_ports(server)
    assert server.starts == 1

"""The CLI's and tests' chat client repeats a request whose kept-alive connection the server
closed as it was reused, when repeating is safe, against a real loopback server that does
exactly that (gunicorn closes idle kept-alive connections after 2 s)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from copilot_dev.client import CopilotClient

PAGE = {"conversation_id": "c1", "state": "bot", "last_seq": 0, "messages": []}
TURN = {"conversation_id": "c1", "state": "bot", "messages": []}


class DroppingServer:
    """Answers the first request on each connection and keeps it open; a second request on
    the same connection is read and dropped unanswered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        return head.split(b"\r\n")[0].decode()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            first = self._read_request(conn)
            if first is None:
                return
            self.requests.append(first)
            payload = json.dumps(PAGE if first.startswith("GET") else TURN).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n".encode()
                + payload
            )
            second = self._read_request(conn)
            if second is not None:
                self.requests.append(second + " (dropped)")
            conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[DroppingServer]:
    s = DroppingServer()
    yield s
    s.sock.close()


def test_a_poll_dropped_on_a_reused_connection_goes_again(server: DroppingServer) -> None:
    client = CopilotClient(server.url)
    client.messages("c1", "token")
    page = client.messages("c1", "token")  # reuses the connection, which is dropped
    assert page.conversation_id == "c1"
    assert [r.endswith("(dropped)") for r in server.requests] == [False, True, False]


def test_a_message_goes_again_only_with_an_idempotency_key(server: DroppingServer) -> None:
    client = CopilotClient(server.url)
    client.messages("c1", "token")
    with pytest.raises(requests.ConnectionError):
        client.send("c1", "token", "hello")  # might have been applied: not repeated
    client.messages("c1", "token")
    turn = client.send("c1", "token", "hello", idempotency_key="k1")
    assert turn.conversation_id == "c1"
    assert [r.split()[0] for r in server.requests] == ["GET", "POST", "GET", "POST", "POST"]

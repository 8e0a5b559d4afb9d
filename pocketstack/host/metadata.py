"""HTTP on 169.254.169.254:80 inside network namespaces, served from this process.

Servers fetch their metadata (`/openstack/latest/meta_data.json`, user data,
the EC2-style `/latest/meta-data/`) from 169.254.169.254. On the linuxbridge
data plane that address sits on each network's DHCP port, in `qdhcp-<network
id>`, so every network has metadata whether or not it has a router, and
dnsmasq hands IPv4 clients a host route to it through the DHCP port (option
121; network/agent.py plans both). No NAT: security groups see an ordinary
flow to port 80, and anti-spoofing makes the client's source address
trustworthy.

The network agent keeps one `Listener` per DHCP namespace in a
`MetadataListeners` (`ensure` each pass, `keep_only` what still exists). A
listening socket belongs to the namespace it was made in (pyroute2 makes it
there), so one thread per namespace serves it with the standard library's
HTTP server; a namespace deleted and made again gets a new socket (told
apart by its inode). What to answer is the agent's handler's business:
`handler(netns, client address, path) -> Answer`; it adds nothing the
client could forge.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pyroute2 import netns as pyroute2_netns

from pocketstack.host import netdev

LOG = logging.getLogger(__name__)
METADATA_IP = "169.254.169.254"
METADATA_CIDR = f"{METADATA_IP}/32"
METADATA_PORT = 80
# Linux's IP_FREEBIND: bind before the address is on a device (the agent adds it next).
_IP_FREEBIND = 15


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"


Handler = Callable[[str, str, str], Answer]  # (namespace, client address, path)


class _Server(ThreadingHTTPServer):
    """An HTTP server on a socket made elsewhere (in another network namespace)."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, netns: str, handler: Handler) -> None:
        super().__init__(sock.getsockname(), _RequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.netns = netns
        self.answer = handler


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "pocketstack-metadata"

    def do_GET(self) -> None:
        try:
            answer = self.server.answer(self.server.netns, self.client_address[0], self.path)
        except Exception:
            LOG.exception("metadata request %s in %s failed", self.path, self.server.netns)
            answer = Answer(500, b"metadata is not available\n")
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("metadata %s: " + format, self.server.netns, *args)


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(netdev.NETNS_DIR / name).st_ino
    except OSError:
        return None


class Listener:
    """169.254.169.254:80 in one namespace, until `close`."""

    def __init__(self, netns: str, handler: Handler) -> None:
        sock = pyroute2_netns.create_socket(netns, socket.AF_INET, socket.SOCK_STREAM, flags=0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
            sock.bind((METADATA_IP, METADATA_PORT))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self.netns = netns
        self.inode = _netns_inode(netns)
        self._server = _Server(sock, netns, handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"metadata-{netns}", daemon=True
        )
        self._thread.start()

    def current(self) -> bool:
        """Is it still in the namespace of that name (not one deleted and made again)?"""
        return self.inode is not None and self.inode == _netns_inode(self.netns)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetadataListeners:
    """One listener per namespace the agent names; level-based like the rest."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._listeners: dict[str, Listener] = {}
        self._lock = threading.Lock()

    def ensure(self, netns: str) -> None:
        with self._lock:
            found = self._listeners.get(netns)
            if found is not None and found.current():
                return
            if found is not None:
                found.close()
            self._listeners[netns] = Listener(netns, self.handler)

    def keep_only(self, names: Iterable[str]) -> None:
        wanted = set(names)
        with self._lock:
            for netns in [n for n in self._listeners if n not in wanted]:
                self._listeners.pop(netns).close()

    def serving(self) -> set[str]:
        with self._lock:
            return set(self._listeners)

    def close(self) -> None:
        self.keep_only(())

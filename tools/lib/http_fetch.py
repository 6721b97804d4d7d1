"""Download one URL into an open file, for tools/data.py: basic auth from the URL's own
user:password@, a total deadline over all of it (connecting, the headers, the body) and a size cap.

    digest = download(url, out, deadline=600, cap=512 * 2**20)    # the sha256 of what was written

Raises Deadline or TooLarge (the caller words the line), else urllib's URLError, OSError,
ValueError or http.client.HTTPException. The deadline is kept by a timer that shuts the sockets
of this one download, so a read blocked on a server that drips bytes (into its headers or its
body) returns at once. http(s):// and file:// URLs (and what urllib's default handlers open).
Not handled: retries, resuming a partial file (a fetch starts again from its first byte).
Standard library only.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import threading
import urllib.parse
import urllib.request


class Deadline(Exception):
    """The download took longer than its deadline."""


class TooLarge(Exception):
    """The file is (or says it is) larger than the cap."""


def request(url: str) -> urllib.request.Request:
    """A Request for url; a user:password@ in it becomes a basic Authorization header (urllib
    would take it for part of the host name), one that a redirect does not carry elsewhere."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return urllib.request.Request(url)
    host = parts.netloc.rpartition("@")[2]
    req = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)))
    user = urllib.parse.unquote(parts.username or "")
    secret = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{secret}".encode("utf-8")).decode("ascii")
    req.add_unredirected_header("Authorization", f"Basic {token}")
    return req


class _Watch:
    """The sockets of one download; expire() shuts them all, and any opened after it."""

    def __init__(self):
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            for sock in self.sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass


def _watched(base: type, watch: _Watch) -> type:
    class Connection(base):
        def connect(self):
            super().connect()
            watch.add(self.sock)
    return Connection


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch):
        super().__init__()
        self.watch = watch

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.watch), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch):
        super().__init__()
        self.watch = watch

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self.watch), req, context=self._context)


def download(url: str, out, deadline: float, cap: int, progress=None) -> str:
    """Stream url into the binary file out; the sha256 of its bytes. progress(total or None) may
    return a bar with update(n) and close()."""
    watch = _Watch()
    timer = threading.Timer(deadline, watch.expire)
    timer.daemon = True
    timer.start()
    digest, size = hashlib.sha256(), 0
    try:
        opener = urllib.request.build_opener(_HTTP(watch), _HTTPS(watch))
        with opener.open(request(url), timeout=min(60.0, deadline)) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if total is not None and total > cap:
                raise TooLarge()
            bar = progress(total) if progress else None
            read = getattr(response, "read1", response.read)  # what has come, not a full block
            for block in iter(lambda: read(1 << 16), b""):
                size += len(block)
                if size > cap:
                    raise TooLarge()
                digest.update(block)
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
    except (OSError, ValueError, http.client.HTTPException):
        if watch.expired:  # a shut socket fails in many ways; the deadline is why
            raise Deadline() from None
        raise
    finally:
        timer.cancel()
    if watch.expired:  # shut between two reads: the body may look complete but is not
        raise Deadline()
    return digest.hexdigest()

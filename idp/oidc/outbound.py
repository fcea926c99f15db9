"""HTTP requests this server makes to a client's server, with a deadline on the whole answer.

requests' timeout bounds each read of the socket, not the answer: a server that sends its status
line and headers a byte at a time, each within the timeout, would hold the thread as long as it
likes (an audit held a jwks_uri fetch 4 s past a 0.5 s deadline, and a back-channel logout's
thread for ever). So every socket a request opens under a `Deadline` is watched by a timer that
shuts it down when the time is up: the read waiting on it returns at once, and the request fails.
Used by idp.oidc.client_jwks (a client's keys) and idp.oidc.backchannel (its logout tokens).

    with Deadline(5.0) as deadline, watched_session() as session:
        answer = session.get(uri, timeout=5.0)   # cut off 5 s after the deadline was entered
"""
from __future__ import annotations

import functools
import threading

_watching = threading.local()  # the deadline of the request this thread is making


class Deadline:
    """Shuts down the sockets of one request (this thread's, while it is entered) after `seconds`;
    `expired` then says that it did."""

    def __init__(self, seconds: float) -> None:
        self._sockets: list = []
        self._lock = threading.Lock()
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        _watching.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._timer.cancel()
        _watching.deadline = None

    def watch(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            cut = self.expired
        if cut:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock) -> None:
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def watched_session():
    """A requests session whose connections (direct, or to a proxy from the environment) hand
    their sockets to this thread's `Deadline` as they open them, before TLS or HTTP is spoken."""
    import requests

    session = requests.Session()
    adapter = _watched_adapter_class()()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@functools.lru_cache(maxsize=1)
def _watched_adapter_class():
    """The adapter of `watched_session`, its pools' connections registering their sockets (made
    once: requests and urllib3 are imported only by a process that calls a client's server)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(connection_class):
        class Watched(connection_class):
            def _new_conn(self):
                sock = super()._new_conn()
                deadline = getattr(_watching, "deadline", None)
                if deadline is not None:
                    deadline.watch(sock)
                return sock
        return Watched

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = watched(HTTPConnection)

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = watched(HTTPSConnection)

    pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(pools)

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if hasattr(manager, "pool_classes_by_scheme"):
                manager.pool_classes_by_scheme = dict(pools)
            return manager

    return WatchedAdapter

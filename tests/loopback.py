"""``host`` and ``url`` of a server the tests start on a loopback port."""

from __future__ import annotations


class Listening:
    """Mixed into a server's class: it has ``port``; ``address`` and ``scheme`` say how clients reach it."""

    address = "127.0.0.1"
    scheme = "http"
    port: int

    @property
    def host(self) -> str:
        """``address:port``, as clients write it (in image references too)."""
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}"

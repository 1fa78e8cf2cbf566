"""Runs the app under an ASGI server: uvicorn (default) or granian, with Distribution's http.* keys."""

from __future__ import annotations

import ssl

import uvicorn

from registry.app import create_app
from registry.config import Config

TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(config: Config) -> None:
    host, port = split_addr(config.http.addr)
    tls = config.http.tls
    options: dict[str, object] = {}
    if tls.certificate:
        options.update(ssl_certfile=tls.certificate, ssl_keyfile=tls.key)
        if tls.clientcas:
            options.update(ssl_ca_certs=tls.clientcas[0], ssl_cert_reqs=ssl.CERT_REQUIRED)
    common = dict(
        host=host,
        port=port,
        access_log=config.accesslog,
        log_level=config.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
        **options,
    )
    if config.http.workers > 1:
        uvicorn.run("registry.app:app_from_environment", factory=True, workers=config.http.workers, **common)
    else:
        uvicorn.run(create_app(config), **common)

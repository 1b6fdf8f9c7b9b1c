"""``lexray serve``: the HTTP API and web page over an index (uvicorn)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path

import typer

from lexray.config import ConfigError, load_config

log = logging.getLogger("lexray.serve")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn serves on it), so a busy port or an unknown host is one line.

    Raises:
        typer.Exit: (code 2) the address cannot be bound, with the reason.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts rebind at once
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        why = exc.strerror or str(exc)
        typer.secho(
            f"error: cannot listen on {host}:{port} ({why}); choose another --set host=... or --set port=...",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from exc
    return sock


def serve(
    index: Path = typer.Option(..., "--index", help="Index directory."),
    config: Path | None = typer.Option(None, "--config", help="YAML with ServeConfig fields."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field, e.g. port=8080."),
) -> None:
    """Serve the search API (/v1, /docs) and the web page (/) on 127.0.0.1 by default.

    A bearer token is read from the environment variable named by ``token_env`` (LEXRAY_API_TOKEN).
    """
    # Imported here: the server, the index stack and the model code cost seconds at `--help`.
    import uvicorn

    from lexray.index import IndexFormatError, ModelLoadError, Searcher
    from lexray.serve import ServeConfig, create_app

    try:
        cfg = load_config(ServeConfig, config, overrides)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    sock = _listen(cfg.host, cfg.port)  # before the model loads: a busy port costs no time
    try:
        searcher = Searcher.open(index, check_fingerprint=cfg.check_fingerprint)
    except (IndexFormatError, ModelLoadError) as exc:
        sock.close()
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    token = os.environ.get(cfg.token_env) or None
    if not _is_loopback(cfg.host) and token is None:
        log.warning(
            "serving on %s without a token: anyone who can reach this address can read the indexed reports; "
            "set %s",
            cfg.host,
            cfg.token_env,
        )
    app = create_app(searcher, cfg, token=token)
    log.info(
        "serving %s on http://%s:%d (auth: %s)",
        index,
        cfg.host,
        cfg.port,
        "bearer token" if token else "none",
    )
    # uvicorn's access log prints query strings; lexray.serve.access logs method, path and status only.
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, access_log=False, log_level="info")
    )
    server.run(sockets=[sock])

"""``featx explore``: start the server on a free port, print the URL, open the browser.

It binds ``127.0.0.1`` by default. Any other ``--host`` makes a random token part of the printed URL (as
Jupyter does), and the server answers no request without it; a loopback bind can ask for one too.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionError

EXTRA = "featx explore needs the explore extra: pip install 'featx[explore]' (starlette, uvicorn)"
PORT_TRIES = 20  # a taken --port moves on to the next free one, at most this far


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.x``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ExploreOptions:
    """``featx explore``'s options, checked on construction."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    open_browser: bool = True

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise OptionError(f"--port {self.port}: give 1 to 65535 (0: any free port)")
        if not self.host.strip():
            raise OptionError("--host: give an address such as 127.0.0.1 or 0.0.0.0")
        if self.token is not None and len(self.token) < 8:
            raise OptionError("--token: at least 8 characters (or leave it out for a random one)")
        if not is_loopback(self.host) and self.token is None:
            object.__setattr__(self, "token", secrets.token_urlsafe(24))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``: ``port``, or the next free one (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    last = None
    for p in [0] if port == 0 else range(port, min(port + PORT_TRIES, 65536)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), p))
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno not in (98, 48, 10048):  # address in use (Linux, macOS, Windows)
                raise OptionError(f"--host {host}: cannot listen there ({exc.strerror})") from None
            continue
        sock.listen(128)
        return sock
    raise OptionError(f"--port {port}: ports {port} to {port + PORT_TRIES - 1} are taken ({last.strerror}); "
                      "give another --port, or 0 for any free one")


def url_of(host: str, port: int, token: str | None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(stores: Sequence[Path], runs_dir: Path | None, options: ExploreOptions, *,
          echo: Callable[[str], None] = print) -> None:
    """Open the stores and serve the app until interrupted (Ctrl-C)."""
    try:
        import uvicorn

        from .server import create_app
    except ModuleNotFoundError as exc:
        if exc.name in ("starlette", "uvicorn"):
            raise OptionError(EXTRA) from None
        raise
    from .explorer import Explorer

    explorer = Explorer(stores, runs_dir)
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    app = create_app(explorer, token=options.token)
    url = url_of(options.host, port, options.token)
    names = ", ".join(c.path.name for c in explorer.collections)
    echo(f"featx explore: {names}; {len(explorer.runs)} fit run(s) under {runs_dir or '(no runs folder)'}")
    threading.Thread(target=explorer.warm, name="featx-explore-warm", daemon=True).start()
    echo(f"serving at {url}  (Ctrl-C stops)")
    if options.open_browser:
        import webbrowser

        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])

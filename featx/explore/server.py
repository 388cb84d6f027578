"""The ASGI app of ``featx explore`` (Starlette): routes onto an :class:`~.explorer.Explorer`, and its guards.

Guards, on every request:

* without a token (a loopback bind) the ``Host`` header must be a loopback name: a web page elsewhere cannot
  reach the server through DNS rebinding;
* with a token (any bind other than loopback), the token must come as ``?token=`` (the printed URL; it is then
  kept in an HttpOnly, SameSite=Strict cookie), that cookie, or an ``X-Featx-Token`` header;
* a POST must carry the ``X-Featx: 1`` header, which no cross-site form can send;
* every response carries a Content-Security-Policy that allows only the app's own script, style, images and
  requests (no inline script, no other origin), ``nosniff``, no referrer and no framing.

A painting is named by store key and row number (``/api/thumb/0/17``): no part of a URL reaches the file
system; the only files served are the three of the page, by fixed name.
"""

from __future__ import annotations

import json
import secrets
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import FeatxError, InputError
from .collection import NotFound, Stale
from .explorer import MAX_UPLOAD_BYTES, Explorer

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY",
                    "cross-origin-opener-policy": "same-origin", "cross-origin-resource-policy": "same-origin"}
STATIC = {"explore.js": "text/javascript; charset=utf-8", "explore.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
COOKIE = "featx_token"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def static_file(name: str) -> bytes:
    """One of the page's files, shipped inside the package (``featx/explore/static/``)."""
    return resources.files("featx.explore").joinpath("static", name).read_bytes()


def _json(obj, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":"), allow_nan=False), status,
                    media_type="application/json", headers={"cache-control": "no-store"})


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class Guard:
    """ASGI middleware: the Host check, the token, the POST header and the security headers (see the module)."""

    def __init__(self, app, *, token: str | None, hosts: set[str] | None):
        self.app, self.token, self.hosts = app, token, hosts

    def _refusal(self, request: Request) -> tuple[Response | None, bool]:
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.hosts is not None and name.lower() not in self.hosts:
            return _error(403, f"host {host!r} is not this server; open the URL featx explore printed"), False
        if request.method == "POST" and request.headers.get("x-featx") != "1":
            return _error(403, "a POST needs the X-Featx: 1 header"), False
        if self.token is None:
            return None, False
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given, self.token):
            return None, True
        for cand in (request.cookies.get(COOKIE), request.headers.get("x-featx-token")):
            if cand is not None and secrets.compare_digest(cand, self.token):
                return None, False
        return _error(403, "this server needs its token: open the URL with ?token=... that featx explore "
                           "printed"), False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal, set_cookie = self._refusal(request)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                                                   "Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            return await refusal(scope, receive, send_secured)
        return await self.app(scope, receive, send_secured)


def _version(request: Request) -> str | None:
    return request.query_params.get("v")


def _int(request: Request, name: str) -> int:
    return int(request.path_params[name])


def create_app(explorer: Explorer, *, token: str | None = None, hosts: set[str] | None = None):
    """The ASGI app over ``explorer``. ``token``: required on every request when set; ``hosts``: the names the
    ``Host`` header may carry (loopback names by default; with a token, any host name when None)."""

    def answer(fn):
        """A route from a function of the request: errors become JSON with their HTTP status."""
        async def endpoint(request: Request) -> Response:
            try:
                result = await fn(request)
            except Stale as exc:
                return _error(409, str(exc))
            except NotFound as exc:  # no such store, run or row; an image that will not be served
                return _error(404, str(exc))
            except InputError as exc:
                return _error(400, str(exc))
            except FeatxError as exc:
                return _error(500, str(exc))
            except (ValueError, KeyError) as exc:
                return _error(400, f"bad request: {exc}")
            return result if isinstance(result, Response) else _json(result)
        return endpoint

    def threaded(fn):
        async def call(request: Request):
            return await run_in_threadpool(fn, request)
        return answer(call)

    def image(data: bytes, media: str = "image/jpeg") -> Response:
        return Response(data, media_type=media, headers={"cache-control": "private, max-age=86400"})

    async def page(request: Request) -> Response:
        return Response(static_file("index.html"), media_type=STATIC["index.html"], headers={"cache-control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return _error(404, "no such file")
        return Response(static_file(name), media_type=STATIC[name], headers={"cache-control": "no-cache"})

    async def not_found(request: Request, exc) -> Response:
        return _error(getattr(exc, "status_code", 404), "no such page")

    async def classify(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return _error(413, f"the image is over {MAX_UPLOAD_BYTES >> 20} MiB")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                return _error(413, f"the image is over {MAX_UPLOAD_BYTES >> 20} MiB")
        q = request.query_params
        return await run_in_threadpool(explorer.classify, request.path_params["store"], bytes(body),
                                       q.get("run") or None, q.get("map", "pca"))

    def rows(request: Request):
        text = request.query_params.get("rows", "")
        wanted = [int(t) for t in text.split(",") if t.strip()]
        return explorer.rows(request.path_params["store"], wanted, _version(request))

    def rescan(request: Request):
        explorer.rescan()
        return explorer.state()

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/state", threaded(lambda r: explorer.state())),
        Route("/api/map/{store}/{method}", threaded(lambda r: explorer.map(r.path_params["store"],
                                                                             r.path_params["method"]))),
        Route("/api/rows/{store}", threaded(rows)),
        Route("/api/painting/{store}/{row:int}", threaded(
            lambda r: explorer.painting(r.path_params["store"], _int(r, "row"), _version(r)))),
        Route("/api/thumb/{store}/{row:int}", threaded(
            lambda r: image(explorer.thumbnail(r.path_params["store"], _int(r, "row"), _version(r))))),
        Route("/api/image/{store}/{row:int}", threaded(
            lambda r: image(explorer.image(r.path_params["store"], _int(r, "row"), _version(r))))),
        Route("/api/cam/{run}/{row:int}", threaded(
            lambda r: image(explorer.cam(r.path_params["run"], _int(r, "row"), _version(r),
                                         r.query_params.get("method", "gradcam")), "image/png"))),
        Route("/api/heldout/{run}", threaded(lambda r: explorer.held_out(r.path_params["run"]))),
        Route("/api/confusion/{run}", threaded(lambda r: explorer.confusion(r.path_params["run"]))),
        Route("/api/audit/{store}", threaded(lambda r: explorer.audit(r.path_params["store"]))),
        Route("/api/match/{a}/{b}", threaded(lambda r: explorer.match(r.path_params["a"], r.path_params["b"]))),
        Route("/api/rescan", threaded(rescan), methods=["POST"]),
        Route("/api/classify/{store}", answer(classify), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    if hosts is None and token is None:
        hosts = set(LOOPBACK)
    return Guard(app, token=token, hosts=None if hosts is None else {h.lower() for h in hosts})

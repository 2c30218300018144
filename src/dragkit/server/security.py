"""The web app's gate: token, Host and Origin checks, anti-framing headers, the login page.

Every HTTP request and websocket handshake passes :class:`GuardMiddleware`:

* ``Host`` must be one of ``allowed_hosts`` when serving on loopback
  (DNS rebinding: a web page cannot reach the server under its own name);
* the token must come as a header (``X-Dragkit-Token`` or
  ``Authorization: Bearer``) or as the HttpOnly ``SameSite=Strict`` cookie
  that ``POST /api/login`` sets (holding a key derived from the token, not
  the token) - never in a URL, so it is not written to
  access logs, browser history or download lists.  ``GET /`` without it
  answers 401 with a small login page, which reads the token from the URL
  *fragment* (``/#token=...``, never sent to any server), exchanges it for
  the cookie and removes it from the address bar;
* a websocket handshake whose ``Origin`` is not this server is refused,
  so another site open in the same browser cannot drive the editor;
* every response carries ``X-Frame-Options: DENY`` and a
  Content-Security-Policy with ``frame-ancestors 'none'`` (no framing,
  hence no click-jacking), ``nosniff`` and ``no-referrer``.

:func:`resolve_token` is how ``dragkit serve`` picks its token.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import DragkitError
from ..utils import atomic_write_bytes

__all__ = ["GuardMiddleware", "TOKEN_HEADER", "TOKEN_ENV", "cookie_name", "cookie_value", "resolve_token",
           "SECURITY_HEADERS"]

TOKEN_HEADER = "x-dragkit-token"
TOKEN_ENV = "DRAGKIT_TOKEN"
TOKEN_FILE = ".token"
MIN_TOKEN_CHARS = 8
LOGIN_PATH = "/api/login"

_LOGIN_SCRIPT = """
(() => {
  const msg = document.getElementById("msg");
  async function login(t) {
    if (!t) return;
    const r = await fetch("api/login", { method: "POST", headers: { "X-Dragkit-Token": t }, credentials: "same-origin" });
    if (r.ok) { location.replace(location.pathname); return; }
    msg.textContent = "That token is not right: use the one dragkit serve printed.";
  }
  const t = new URLSearchParams(location.hash.slice(1)).get("token") || new URLSearchParams(location.search).get("token");
  if (t) { history.replaceState(null, "", location.pathname); login(t); }
  document.getElementById("f").addEventListener("submit", (e) => { e.preventDefault(); login(document.getElementById("t").value.trim()); });
})();
"""
_LOGIN_HASH = base64.b64encode(hashlib.sha256(_LOGIN_SCRIPT.encode()).digest()).decode()
_LOGIN_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dragkit: token needed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>dragkit</h1>
<p>This editor needs its token. Open the address <code>dragkit serve</code> printed (it ends in
<code>#token=...</code>), or paste the token here.</p>
<form id="f"><input id="t" type="password" autocomplete="off" aria-label="token" autofocus>
<button type="submit">Open the editor</button></form><p id="msg" role="alert"></p></main>
<script>{_LOGIN_SCRIPT}</script></body></html>
""".encode()

_CSP = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; script-src 'self'; "
        "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Headers added to every HTTP response.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_LOGIN_CSP = _CSP.replace("script-src 'self'", f"script-src 'sha256-{_LOGIN_HASH}'").encode()


def cookie_name(token: str) -> str:
    """The cookie this server's login sets: named after a hash of the token, since cookies
    ignore ports (two servers on one host keep separate cookies)."""
    return "dragkit_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def cookie_value(token: str) -> str:
    """What the cookie holds: a key derived from the token, not the token itself, so no
    response ever carries the token (a stolen cookie opens this server, but does not reveal it)."""
    return hmac.new(token.encode(), b"dragkit-login-cookie", hashlib.sha256).hexdigest()


class GuardMiddleware:
    """ASGI middleware: token, Host and Origin checks, security headers (see the module docstring).

    Args:
        token: the secret every request must carry; None: no token (tests,
            embedding; ``dragkit serve`` always sets one).
        allowed_hosts: accepted ``Host`` names, or None for any.
    """

    def __init__(self, app: Any, token: str | None, allowed_hosts: set[str] | None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.cookie = cookie_name(token) if token else None
        self.cookie_value = cookie_value(token) if token else None

    def _match(self, candidate: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.token.encode())

    def _header_token(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return headers.get(TOKEN_HEADER)

    def _token_ok(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        given = self._header_token(headers)
        if given is not None and self._match(given):
            return True
        if "cookie" in headers:
            jar = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:
                return False
            if self.cookie in jar:
                assert self.cookie_value is not None
                return hmac.compare_digest(jar[self.cookie].value.encode("utf-8", "replace"), self.cookie_value.encode())
        return False

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        hostname = urlsplit("//" + host).hostname or ""
        path = scope.get("path", "")
        if self.allowed_hosts is not None and hostname not in self.allowed_hosts:
            return await self._refuse(scope, send, 400, "host not allowed")
        if scope["type"] == "http" and path == LOGIN_PATH:
            return await self._login(scope, headers, send)
        if not self._token_ok(headers):
            if scope["type"] == "http" and path == "/" and scope.get("method") in ("GET", "HEAD"):
                return await _respond(send, 401, _LOGIN_PAGE, b"text/html; charset=utf-8", csp=_LOGIN_CSP)
            return await self._refuse(scope, send, 401, "missing or wrong token: open the address "
                                      "`dragkit serve` printed, or send the X-Dragkit-Token header")
        if scope["type"] == "websocket" and "origin" in headers and urlsplit(headers["origin"]).netloc != host:
            return await self._refuse(scope, send, 403, "websocket from another origin refused")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    async def _login(self, scope: dict, headers: dict[str, str], send: Callable) -> None:
        """``POST /api/login`` with the token in a header: 204 and the HttpOnly cookie."""
        if scope.get("method") != "POST":
            return await _respond(send, 405, b'{"error":"use POST"}', b"application/json")
        given = self._header_token(headers)
        if self.token is None:
            return await _respond(send, 204, b"", None)
        if given is None or not self._match(given):
            return await _respond(send, 401, b'{"error":"wrong token"}', b"application/json")
        cookie = f"{self.cookie}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict".encode()
        return await _respond(send, 204, b"", None, extra=[(b"set-cookie", cookie), (b"cache-control", b"no-store")])

    @staticmethod
    async def _refuse(scope: dict, send: Callable, status: int, text: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4000 + status, "reason": text})
            return
        await _respond(send, status, json.dumps({"error": text}).encode(), b"application/json")


async def _respond(send: Callable, status: int, body: bytes, media: bytes | None, *, csp: bytes | None = None,
                   extra: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    hdrs = [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    if media:
        hdrs.append((b"content-type", media))
    for k, v in SECURITY_HEADERS:
        hdrs.append((k, csp if (csp is not None and k == b"content-security-policy") else v))
    hdrs.extend(h for h in extra if h[0] != b"cache-control")
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def resolve_token(given: str | None, sessions_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """The token ``dragkit serve`` uses, and where it came from.

    In order: ``$DRAGKIT_TOKEN``; ``given`` (``--token``; ``'auto'`` means
    a fresh one); the token saved in ``SESSIONS/.token`` by an earlier run
    (so open tabs reconnect after a restart); else a new 144-bit one, saved
    there (``0600``).  Returns ``(token, source)`` with source ``'env'``,
    ``'argument'`` or ``'file'``.

    Raises:
        DragkitError: a token shorter than 8 characters.
    """
    env = os.environ.get(TOKEN_ENV)
    if env:
        token, source = env, "env"
    elif given and given != "auto":
        token, source = given, "argument"
    else:
        path = Path(sessions_dir) / TOKEN_FILE
        token = ""
        if given != "auto":
            try:
                token = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                token = ""
        if len(token) < 16 or not token.replace("-", "").replace("_", "").isalnum():
            token = secrets.token_urlsafe(18)
            Path(sessions_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_bytes(path, (token + "\n").encode("ascii"), mode=0o600)
        source = "file"
    if len(token) < MIN_TOKEN_CHARS:
        raise DragkitError(f"the token must be at least {MIN_TOKEN_CHARS} characters")
    return token, source

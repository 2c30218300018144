"""The FastAPI app: ``create_app`` assembles the parts.

* :mod:`.settings` - :class:`Limits`, what one server accepts;
* :mod:`.server` - the shared state (tabs, models, compute thread, store);
* :mod:`.protocol` / :mod:`.frames` - the websocket messages, both ways;
* :mod:`.connection` / :mod:`.handlers` / :mod:`.drag_run` - one tab's
  websocket, what each message does, a drag in progress;
* :mod:`.routes` - the page, the downloads and ``/ws`` on an ``APIRouter``;
* :mod:`.security` - the token, Host and Origin checks and headers;
* :mod:`.engine` - the only module that touches the drag engine.

``docs/app.md`` documents the protocol; ``docs/architecture.md`` the layout.
"""
from __future__ import annotations

import contextlib
import os
from typing import AsyncIterator

from fastapi import FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .protocol import LimitError, ProtocolError
from .photos import photo_router
from .routes import STATIC_DIR, http_error, router
from .security import GuardMiddleware
from .server import Server
from .settings import Limits

__all__ = ["create_app", "Limits", "ProtocolError", "LimitError", "STATIC_DIR"]


def create_app(
    model: str | None = None,
    *,
    sessions_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    limits: Limits | None = None,
    preload: bool = False,
) -> FastAPI:
    """Build the app.

    Args:
        model: model for new tabs (default: ``models.default_model_name()``).
        sessions_dir: where tabs are saved (default ``$DRAGKIT_HOME/sessions``).
        token: if set, every HTTP request and websocket must carry it.
        allowed_hosts: accepted ``Host`` header names (None: any), against
            DNS rebinding when serving on loopback.
        limits: see :class:`Limits`.
        preload: load and warm up the default model at start-up.
    """
    from ..models import cache_dir

    server = Server(model, sessions_dir or cache_dir() / "sessions", limits or Limits())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if preload:  # load and warm the default model before the first tab asks for it
            server.compute.submit("preload", lambda: server.models.get(server.model_name()))
        yield
        server.compute.close()

    app = FastAPI(title="dragkit", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = server
    app.include_router(router)
    app.include_router(photo_router)
    app.add_exception_handler(HTTPException, http_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(GuardMiddleware, token=token, allowed_hosts=allowed_hosts)
    return app

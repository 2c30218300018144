"""Web-app helpers for the security tests: websocket tabs, a real uvicorn server (the model home is tests/conftest.py's)."""
from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from typing import Any, Iterator


from support.generators import HOME_RES
from support.webtab import Tab

RES = HOME_RES  # the served ``tiny`` model (tests/support/generators.py)


@contextlib.contextmanager
def tabs(client: Any) -> Iterator[Any]:
    """``open_tab(**hello)`` inside the block; every tab is closed on the way out."""
    opened: list[Tab] = []

    def open_tab(**hello: Any) -> Tab:
        cm = client.websocket_connect("/ws")
        tab = Tab(cm.__enter__(), cm)
        opened.append(tab)
        tab.hello(**hello)
        return tab

    try:
        yield open_tab
    finally:
        for tab in reversed(opened):
            tab.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """The app under a real uvicorn (access log on, at info level) in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", log_config=None, access_log=True,
                            lifespan="on", ws="websockets-sansio" if _has_sansio() else "auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _has_sansio() -> bool:
    try:
        import importlib

        importlib.import_module("uvicorn.protocols.websockets.websockets_sansio_impl")
        return True
    except ImportError:
        return False


def env_without_token() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DRAGKIT_TOKEN"}

"""The web app: ``dragkit serve`` (FastAPI + one websocket per tab + static page).

``create_app`` builds the ASGI app; see ``docs/app.md`` for the protocol.
"""
from __future__ import annotations

__all__ = ["create_app", "Limits"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)

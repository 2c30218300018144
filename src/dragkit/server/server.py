"""The shared state of one running app: tabs, models, the compute queue, the store, the limits."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

from ..errors import DragkitError
from .compute import ComputeQueue
from .photos import PhotoStore, parse_photo_name
from .sessions import ModelCache, SessionStore, Tab, valid_sid
from .settings import Limits

__all__ = ["Server", "NoSuchTab"]

log = logging.getLogger("dragkit.server")


class NoSuchTab(DragkitError):
    """A session id that is malformed or names no tab (HTTP 404)."""


class Server:
    """Tabs (in memory and on disk), generators, the compute thread: what every connection shares.

    Args:
        model: the model for new tabs (None: ``models.default_model_name()``).
        sessions_dir: where tabs are saved.
        limits: see :class:`~.settings.Limits`.
    """

    def __init__(self, model: str | None, sessions_dir: str | os.PathLike[str], limits: Limits) -> None:
        self.default_model = model
        self.limits = limits
        self.store = SessionStore(sessions_dir, max_saved=limits.max_saved, keep_days=limits.keep_days)
        self.photos = PhotoStore(self.store.root)  # inverted photos' files, SESSIONS/SID/photos/ (photos.py)
        self.models = ModelCache(allowed=self._may_load, loader=self._load_photo)
        self.compute = ComputeQueue()
        self.tabs: dict[str, Tab] = {}
        self.live = 0  # tabs with a connection
        self.pending = 0  # websockets that have not said hello yet
        self.last_prune = -1e9

    # -- models ------------------------------------------------------------
    def model_name(self) -> str:
        if self.default_model:
            return self.default_model
        from ..models import default_model_name

        return default_model_name()

    def offers(self, name: str) -> bool:
        """Whether ``name`` is a model this server offers (a registry name or its own --model)."""
        from ..models import list_models

        return name == self.default_model or name in {m.name for m in list_models()}

    def _may_load(self, name: str) -> bool:
        """What the model cache may load: an offered model, or a saved photo edit's generator (never from a
        browser: ``check_model`` accepts offered models only)."""
        return self.offers(name) or self.photos.exists(name)

    def _load_photo(self, name: str) -> object | None:
        return self.photos.load_generator(name, self.models.get) if parse_photo_name(name) else None

    def check_model(self, name: str) -> str:
        """``name`` if it is a model this server offers; never a path from the browser."""
        from ..models import list_models

        if self.offers(name):
            return name
        offered = [m.name for m in list_models()]
        raise DragkitError(f"unknown model {name[:60]!r}; this server offers: {', '.join(offered) or '(none)'}")

    def models_json(self) -> list[dict[str, Any]]:
        from ..models import list_models

        return [
            {"name": m.name, "source": m.source, "format": m.format, "resolution": m.resolution,
             "height": m.resolution, "width": m.width if m.width is not None else m.resolution,
             "size": m.size_text, "size_bytes": m.size_bytes}
            for m in list_models()
        ]

    # -- compute -----------------------------------------------------------
    async def run(self, owner: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the compute thread, in ``owner``'s turn."""
        return await asyncio.wrap_future(self.compute.submit(owner, fn))

    # -- tabs --------------------------------------------------------------
    def prune_saved(self) -> None:
        """Bound the sessions folder when a tab is created (compute thread): by count
        whenever it is over ``max_saved``, by age at most once an hour."""
        now = time.monotonic()
        if now - self.last_prune < 3600 and self.store.count() <= self.limits.max_saved:
            return
        self.last_prune = now
        live = {sid for sid, t in self.tabs.items() if t.conn is not None or t.running or t.inverting is not None}
        gone = self.store.prune(keep=live)  # a detached tab in memory is saved again on its next action
        if gone:
            log.info("removed %d saved edit(s) (age or count limit)", gone)

    def evict(self) -> None:
        """Forget detached tabs beyond a bound (they stay on disk)."""
        detached = sorted((t.last_used, sid) for sid, t in self.tabs.items()
                          if t.conn is None and not t.running and t.inverting is None)
        for _, sid in detached[: max(0, len(detached) - 2 * self.limits.max_sessions)]:
            del self.tabs[sid]

    async def load_tab(self, sid: str) -> Tab | None:
        """The tab ``sid`` from memory, else from disk (None if it exists in neither).

        Raises:
            DragkitError: the saved tab exists but cannot be reopened.
        """
        tab = self.tabs.get(sid)
        if tab is None and valid_sid(sid) and self.store.exists(sid):
            loaded = await self.run(sid, lambda: self.store.load(sid, self.models, self.limits.history))
            tab = self.tabs.setdefault(sid, loaded)
        return tab

    async def tab_for(self, sid: str) -> Tab:
        """The tab with id ``sid``, from memory or disk (for downloads).

        Raises:
            NoSuchTab: a malformed id, or no such tab.
        """
        if not valid_sid(sid):
            raise NoSuchTab("malformed session id")
        known = sid in self.tabs
        tab = await self.load_tab(sid)
        if tab is None:
            raise NoSuchTab("no such session")
        if not known:
            tab.last_used = time.monotonic()
            self.evict()  # a tab loaded for a download is detached: bounded like the others
        return tab

"""HTTP routes and the websocket endpoint, on one :class:`fastapi.APIRouter`.

Cross-cutting lookups are dependencies: :func:`get_server` (the app's
:class:`~.server.Server`) and :func:`get_tab` (the tab named in the path,
from memory or disk, or ``HTTPException(404)``).  Errors are
``HTTPException``s; :func:`http_error` renders them as ``{"error": message}``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import HTTPConnection

from .. import __version__
from ..errors import DragkitError
from ..utils import check_scale, upscale
from ..video import MEDIA_TYPES, encode_video
from .connection import Connection
from .server import Server
from .sessions import Tab

__all__ = ["router", "get_server", "get_tab", "http_error", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Progress videos: small models are upscaled (nearest) to at least this height, the last frame held.
VIDEO_MIN_SIDE, VIDEO_FPS, VIDEO_HOLD_SECONDS = 256, 15, 0.5

router = APIRouter()


def get_server(conn: HTTPConnection) -> Server:
    """The app's :class:`~.server.Server` (HTTP requests and websockets alike)."""
    return conn.app.state.server


ServerDep = Annotated[Server, Depends(get_server)]


async def get_tab(sid: str, server: ServerDep) -> Tab:
    """The tab ``sid`` (for downloads); 404 if the id is malformed, unknown or its files are damaged."""
    try:
        return await server.tab_for(sid)
    except DragkitError as exc:
        raise HTTPException(404, str(exc)) from None


TabDep = Annotated[Tab, Depends(get_tab)]


def _attachment(data: bytes, media: str, name: str) -> Response:
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _edit(tab: Tab) -> Any:
    if tab.edit is None:
        raise HTTPException(404, "no image yet")
    return tab.edit


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error as ``{"error": message}``."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@router.get("/", include_in_schema=False)
def page() -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/api/health")
def health(server: ServerDep) -> dict[str, Any]:
    return {"ok": True, "version": __version__, "default_model": server.model_name(), "live_tabs": server.live}


@router.get("/api/models")
def models(server: ServerDep) -> dict[str, Any]:
    return {"models": server.models_json(), "default": server.model_name()}


def download_name(edit: Any, what: str) -> str:
    """``<model>-<seed>-edit.png``, ``<model>-<seed>-progress.mp4``, ``<model>-<seed>.dragkit.json``
    (``edit`` in place of the seed for an edit that did not start from one)."""
    name = getattr(edit, "base_model", None) or edit.model  # a photo's edit: the model it was inverted into
    model = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))[:64] or "model"
    return f"{model}-{edit.seed if edit.seed is not None else 'edit'}{what}"


@router.get("/api/sessions/{sid}/image.png")
async def image_png(tab: TabDep, server: ServerDep, scale: str = "1") -> Response:
    """The current image; ``?scale=N`` (1-16) enlarges it N times with nearest neighbour."""
    edit = _edit(tab)
    try:
        k = check_scale(int(scale) if scale.strip().lstrip("-").isdigit() else scale, edit.image_size, what="scale")
    except DragkitError as exc:
        raise HTTPException(400, str(exc)) from None

    def get() -> bytes:
        if tab.image_png is None:
            tab.refresh_image()
        if k == 1:
            return tab.image_png
        import io

        from PIL import Image

        buf = io.BytesIO()
        upscale(Image.open(io.BytesIO(tab.image_png)), k).save(buf, format="PNG")
        return buf.getvalue()

    png = await server.run(tab.sid, get)
    return _attachment(png, "image/png", download_name(edit, "-edit.png"))


@router.get("/api/sessions/{sid}/session.dragkit.json")
async def session_file(tab: TabDep, server: ServerDep) -> Response:
    edit = _edit(tab)
    data = await server.run(tab.sid, edit.file_bytes)
    return _attachment(data, "application/json", download_name(edit, ".dragkit.json"))


@router.get("/api/sessions/{sid}/progress.{ext}")
async def progress_video(ext: str, tab: TabDep) -> Response:
    if ext not in MEDIA_TYPES:
        raise HTTPException(404, "progress video is .mp4 or .gif")
    frames = list(tab.video_frames)
    if not frames:
        raise HTTPException(404, "no drag yet in this session: run one, then download its video")
    try:
        data = await asyncio.to_thread(encode_video, frames, ext, VIDEO_FPS, min_side=VIDEO_MIN_SIDE,
                                       hold=VIDEO_HOLD_SECONDS)
    except DragkitError as exc:
        raise HTTPException(503, str(exc)) from None
    edit = tab.edit
    name = download_name(edit, f"-progress.{ext}") if edit is not None else f"dragkit-progress.{ext}"
    return _attachment(data, MEDIA_TYPES[ext], name)


@router.websocket("/ws")
async def websocket(ws: WebSocket, server: ServerDep) -> None:
    await ws.accept()
    if server.pending >= server.limits.max_pending:  # connections that have not said hello are bounded too
        await ws.close(code=1013, reason="too many connections waiting to say hello")
        return
    conn = Connection(ws, server)
    server.pending += 1
    try:
        await conn.serve()
    finally:
        if not conn.said_hello:
            server.pending -= 1

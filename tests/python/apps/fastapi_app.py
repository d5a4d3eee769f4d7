"""A FastAPI application for the asgi worker's framework tests: routing,
JSON, a form upload, streaming, background tasks, lifespan state, a
synchronous endpoint (thread pool) and WebSocket echo and broadcast."""

import asyncio
import contextlib
import os
from typing import Optional

from fastapi import BackgroundTasks, FastAPI, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

LOG = os.environ.get("ASGI_STATE_LOG")


def note(line):
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    note("startup")
    yield {"db": "connected"}
    note("shutdown")


app = FastAPI(lifespan=lifespan)
room = set()


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: dict):
    return {"received": item, "keys": sorted(item)}


@app.get("/sync")
def sync_endpoint():
    # FastAPI runs this in anyio's thread pool.
    return {"sync": True}


@app.get("/state")
async def state(request: Request):
    return {"db": request.state.db}


@app.post("/upload")
async def upload(name: str = Form(...), file: UploadFile = None):
    data = await file.read()
    return {"name": name, "filename": file.filename, "size": len(data), "head": data[:10].decode("latin-1")}


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(5):
            yield b"chunk %d\n" % i
            await asyncio.sleep(0.02)

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/endless")
async def endless():
    async def gen():
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            note("endless stream stopped")

    return StreamingResponse(gen(), media_type="text/event-stream")


@app.post("/background")
async def background(tasks: BackgroundTasks):
    async def later():
        await asyncio.sleep(0.1)
        note("background task ran")

    tasks.add_task(later)
    return {"queued": True}


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    disconnect = None
    while disconnect is None:
        try:
            await websocket.send_text("echo: " + await websocket.receive_text())
        except WebSocketDisconnect as e:
            disconnect = e
    note("ws closed %s" % disconnect.code)


@app.websocket("/room")
async def ws_room(websocket: WebSocket):
    await websocket.accept()
    room.add(websocket)
    try:
        while True:
            text = await websocket.receive_text()
            for peer in list(room):
                await peer.send_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(websocket)

"""Pieces the small ASGI test apps share: a lifespan that agrees to both
events, and a WebSocket echo."""


async def accept_lifespan(receive, send):
    """Answers startup and shutdown with `.complete`; returns after shutdown."""
    kind = ""
    while kind != "lifespan.shutdown":
        kind = (await receive())["type"]
        await send({"type": kind + ".complete"})


async def websocket_echo(receive, send, prefix=""):
    """Accepts, then sends every message back (text with `prefix`) until
    the client leaves."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {"type": "websocket.send"}
        if message.get("bytes") is not None:
            reply["bytes"] = message["bytes"]
        else:
            reply["text"] = prefix + (message.get("text") or "")
        await send(reply)

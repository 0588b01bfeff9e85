"""HTTP and WebSocket signaling: app.py composes the aiohttp application, cli.py is the `liveclass` command
(page_links.py: the page links it prints at start).
Packages: auth (tokens) · lesson (the pure lesson model and wire format) · http (errors, admission, TLS) · live
(the room hub and WebSocket) · media (WHIP/WHEP, ICE servers, library API) · cluster · cascade."""

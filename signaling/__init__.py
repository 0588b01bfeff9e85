"""HTTP and WebSocket signaling: rooms, tokens, WHIP/WHEP, static pages."""

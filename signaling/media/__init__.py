"""Media over HTTP: WHIP and WHEP endpoints, who may publish or play what, TURN credentials for the pages, and
the resource library's API (recordings, replay)."""

"""Cascade between nodes on the HTTP side: where a viewer is served (pure policy), the SFU-to-SFU links an
edge opens to a room's origin, and lesson facts from the origin to its edges over Redis pub/sub."""

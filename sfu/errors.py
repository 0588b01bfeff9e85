"""Errors the media plane reports to signaling; each maps to one HTTP status there."""


class SfuError(Exception):
    status = 500


class BadOffer(SfuError):
    """The SDP offer is malformed or cannot be served (HTTP 400)."""
    status = 400


class RoomBusy(SfuError):
    """The room already has its publisher (HTTP 409)."""
    status = 409


class SessionNotFound(SfuError):
    status = 404

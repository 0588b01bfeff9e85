"""The SFU-to-SFU link's control messages, pure: which relayed SSRC is which layer of which slot, and which
slots an edge wants.

The origin sends each layer of each relayed track on its own SSRC over one bundled peer connection, and
describes them on the link's data channel (`streams`, a full snapshot each time: idempotent, so a lost or
late message is repaired by the next one). The edge sends `want` with the slots its own viewers play, and
`reach` with how the teacher's camera reaches each of its classrooms (reach.py).
Nothing here touches the network or the clock; both ends validate what they read (the other end is another
node of ours, but a bug there must not crash this one).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

from sfu.room.feed import Slot

MAX_STREAMS = 64          # 3 slots x (3 simulcast + 2 ladder rungs + audio) fits many times over
MAX_WANTS = 32
MAX_MESSAGE_BYTES = 64 * 1024
KINDS = ("audio", "video")
CODECS = ("VP8", "H264", "opus", "PCMU", "PCMA", "G722")
SINGLE_LAYER = "main"     # layer id of a publisher's only video stream (never None on the edge: see below)


class RelayMessageError(ValueError):
    """A control message that cannot be used (malformed, out of range, too big)."""


@dataclass(frozen=True)
class RelayedStream:
    """One SSRC on the link: a layer (`layer`: the simulcast RID, a ladder rung's id, or "main") of the
    `kind` track of `slot` at the origin, or that slot's audio (`layer` None)."""
    ssrc: int
    slot: str
    kind: str
    codec: str
    clock_rate: int
    payload_type: int
    layer: Optional[str] = None
    width: int = 0
    height: int = 0

    def slot_value(self) -> Slot:
        return parse_slot(self.slot)


def slot_text(slot: Slot) -> str:
    return str(slot)


def parse_slot(text: str) -> Slot:
    """`camera`, `screen`, `stage` or `classroom:<identity>` (as str(Slot) writes them)."""
    if not isinstance(text, str) or not text or len(text) > 200:
        raise RelayMessageError("a slot is a non-empty string")
    if text.startswith("classroom:"):
        identity = text[len("classroom:"):]
        if not identity:
            raise RelayMessageError("a classroom slot names its identity")
        return Slot("classroom", identity)
    try:
        return Slot(text)
    except ValueError as exc:
        raise RelayMessageError(str(exc)) from None


def layer_id(kind: str, rid: Optional[str]) -> Optional[str]:
    """The layer id an origin stream is relayed as. Video always has one, so the edge's track sees a named
    layer (as a simulcast publisher's) and never builds a server-side ladder of its own: the origin's rungs,
    if any, are relayed as layers too."""
    if kind != "video":
        return None
    return rid if rid is not None else SINGLE_LAYER


def encode_streams(streams: Iterable[RelayedStream]) -> str:
    return json.dumps({"type": "streams", "streams": [asdict(s) for s in streams]}, separators=(",", ":"))


def encode_want(slots: Iterable[str]) -> str:
    return json.dumps({"type": "want", "slots": sorted(set(slots))}, separators=(",", ":"))


def decode(text: str) -> dict:
    """A control message as a dict with a known `type`; raises RelayMessageError."""
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_BYTES:
        raise RelayMessageError("control messages are JSON text of at most 64 KiB")
    try:
        msg = json.loads(text)
    except ValueError:
        raise RelayMessageError("control message is not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") not in ("streams", "want", "reach"):
        raise RelayMessageError("control message has no known type")
    return msg


def streams_of(msg: dict) -> list[RelayedStream]:
    """The validated streams of a `streams` message; raises RelayMessageError (the whole message is refused:
    a partial map would detach layers that are still there)."""
    raw = msg.get("streams")
    if not isinstance(raw, list) or len(raw) > MAX_STREAMS:
        raise RelayMessageError(f"streams must be a list of at most {MAX_STREAMS}")
    out: list[RelayedStream] = []
    seen: set[int] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise RelayMessageError("a stream is an object")
        try:
            s = RelayedStream(ssrc=item["ssrc"], slot=item["slot"], kind=item["kind"], codec=item["codec"],
                              clock_rate=item["clock_rate"], payload_type=item["payload_type"],
                              layer=item.get("layer"), width=item.get("width", 0), height=item.get("height", 0))
        except (KeyError, TypeError):
            raise RelayMessageError("a stream lacks a field") from None
        ints = (s.ssrc, s.clock_rate, s.payload_type, s.width, s.height)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise RelayMessageError("stream numbers must be integers")
        if not 0 < s.ssrc < 1 << 32 or s.ssrc in seen:
            raise RelayMessageError("stream ssrc out of range or repeated")
        if s.kind not in KINDS or s.codec not in CODECS or not 0 <= s.payload_type < 128:
            raise RelayMessageError(f"stream {s.ssrc}: unknown kind, codec or payload type")
        if not 1000 <= s.clock_rate <= 200_000 or not (0 <= s.width <= 16384 and 0 <= s.height <= 16384):
            raise RelayMessageError(f"stream {s.ssrc}: clock rate or size out of range")
        # an audio stream's layer must be None: len() of another JSON value (a number) raised TypeError
        layer_ok = isinstance(s.layer, str) and 0 < len(s.layer) <= 32 if s.kind == "video" else s.layer is None
        if not layer_ok:
            raise RelayMessageError(f"stream {s.ssrc}: video streams name a layer, audio streams none")
        parse_slot(s.slot)
        seen.add(s.ssrc)
        out.append(s)
    return out


def wants_of(msg: dict) -> set[str]:
    raw = msg.get("slots")
    if not isinstance(raw, list) or len(raw) > MAX_WANTS:
        raise RelayMessageError(f"slots must be a list of at most {MAX_WANTS}")
    for s in raw:
        parse_slot(s)
    return set(raw)


@dataclass
class FeedChange:
    """What the edge does to one slot's relayed feed when a new snapshot arrives."""
    slot: str
    added: list[RelayedStream]
    removed: list[int]            # SSRCs no longer relayed
    rebuild: bool = False         # a layer went away without a replacement: re-attach the track's layers


def plan(current: dict[int, RelayedStream], snapshot: list[RelayedStream]) -> list[FeedChange]:
    """From the streams installed now to the snapshot: per slot, the streams to add and the SSRCs to drop.

    A stream whose description changed (the same SSRC now another layer or slot) is dropped and added again.
    A removed video layer that no added stream replaces (same slot and layer id) asks for a rebuild, since a
    track replaces a layer only by its id."""
    wanted = {s.ssrc: s for s in snapshot}
    changes: dict[str, FeedChange] = {}

    def change(slot: str) -> FeedChange:
        return changes.setdefault(slot, FeedChange(slot, [], []))

    for ssrc, old in current.items():
        new = wanted.get(ssrc)
        if new is None or _identity(new) != _identity(old):
            change(old.slot).removed.append(ssrc)
    for ssrc, new in wanted.items():
        old = current.get(ssrc)
        if old is None or _identity(new) != _identity(old):
            change(new.slot).added.append(new)
    for c in changes.values():
        replaced = {(s.kind, s.layer) for s in c.added}
        for ssrc in c.removed:
            old = current[ssrc]
            if old.slot == c.slot and (old.kind, old.layer) not in replaced:
                c.rebuild = True
    return sorted(changes.values(), key=lambda c: c.slot)


def _identity(s: RelayedStream) -> tuple:
    # size is informational (learnt again from keyframes): a new size is not a new stream
    return (s.slot, s.kind, s.codec, s.clock_rate, s.payload_type, s.layer)

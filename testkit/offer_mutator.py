"""Mutated SDP offers for robustness tests and benchmarks: what a careless or hostile client holding a valid
token might POST to WHIP/WHEP. Deterministic for a seed, so a failing input is reproduced from its index.

Mutations, one or a few per offer: delete, duplicate or swap lines, flip or insert bytes, truncate, make an
attribute huge, add hundreds of m-sections, break fingerprints, payload types, ICE credentials, directions,
BUNDLE groups, RID/simulcast lines and extension maps, or put nonsense where numbers belong.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Iterator

from testkit.peers import offer

Mutation = Callable[[random.Random, list[str]], list[str]]


def _lines(sdp: str) -> list[str]:
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def _pick(rng: random.Random, lines: list[str], prefix: str = "") -> int:
    idx = [i for i, line in enumerate(lines) if line.startswith(prefix)] or list(range(len(lines)))
    return rng.choice(idx)


def delete_line(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    if len(out) > 1:
        del out[rng.randrange(1, len(out))]
    return out


def duplicate_line(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    i = rng.randrange(len(out))
    out.insert(i, out[i])
    return out


def swap_lines(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    i, j = rng.randrange(len(out)), rng.randrange(len(out))
    out[i], out[j] = out[j], out[i]
    return out


def flip_bytes(rng: random.Random, lines: list[str]) -> list[str]:
    text = bytearray(_join(lines).encode())
    for _ in range(rng.randint(1, 8)):
        text[rng.randrange(len(text))] = rng.randrange(32, 127)
    return _lines(text.decode("ascii", errors="replace"))


def truncate(rng: random.Random, lines: list[str]) -> list[str]:
    text = _join(lines)
    return _lines(text[: rng.randrange(1, len(text))])


def huge_attribute(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    i = _pick(rng, out, "a=")
    out[i] = out[i] + "x" * rng.choice((1000, 8000, 40000))
    return out


def many_media_sections(rng: random.Random, lines: list[str]) -> list[str]:
    section = [line for line in lines if not line.startswith(("v=", "o=", "s=", "t=", "a=group", "a=msid-semantic"))]
    first = next((i for i, line in enumerate(section) if line.startswith("m=")), 0)
    one = section[first:first + 20]
    return lines + one * rng.choice((50, 200, 400))


def bad_fingerprint(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    for i, line in enumerate(out):
        if line.startswith("a=fingerprint:"):
            out[i] = rng.choice(["a=fingerprint:sha-256 ZZ:ZZ", "a=fingerprint:md5 00", "a=fingerprint:",
                                 "a=fingerprint:sha-256 " + ":".join(["AB"] * 64), "a=fingerprint:sha-999 00:11"])
    return out


def bad_payload_types(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    for i, line in enumerate(out):
        if line.startswith("m=") and rng.random() < 0.7:
            parts = line.split()
            parts[3:] = [rng.choice(["-1", "300", "abc", "96", "0", "127", "999999999999"])
                         for _ in range(rng.randint(0, 6))]
            out[i] = " ".join(parts)
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")) and rng.random() < 0.3:
            out[i] = re.sub(r":\d+", ":" + rng.choice(["x", "-5", "70000", ""]), line, count=1)
    return out


def bad_numbers(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    i = _pick(rng, out, rng.choice(["a=rtpmap:", "a=extmap:", "a=ssrc:", "m=", "a=candidate:", "c=", "a=rid:"]))
    out[i] = re.sub(r"\d+", lambda m: rng.choice(["-1", "4294967296", "NaN", "0x10", "", "1e99"]), out[i])
    return out


def bad_ice(rng: random.Random, lines: list[str]) -> list[str]:
    out = [line for line in lines if not line.startswith(("a=ice-ufrag", "a=ice-pwd"))] if rng.random() < 0.5 \
        else [re.sub(r"^(a=ice-(?:ufrag|pwd):).*", r"\g<1>" + rng.choice(["", " ", "é" * 300, "x"]), line)
              for line in lines]
    return out


def bad_direction(rng: random.Random, lines: list[str]) -> list[str]:
    words = ["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive", "a=sendbogus"]
    return [rng.choice(words) if line in words[:4] else line for line in lines]


def bad_bundle(rng: random.Random, lines: list[str]) -> list[str]:
    out = [line for line in lines if not line.startswith("a=group:BUNDLE")]
    choice = rng.randrange(4)
    if choice == 1:
        out.insert(3, "a=group:BUNDLE 7 8 9")
    elif choice == 2:
        out.insert(3, "a=group:BUNDLE")
    elif choice == 3:
        out = [re.sub(r"^a=mid:.*", "a=mid:0", line) for line in lines]  # every section the same mid
    return out


def bad_simulcast(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    video = next((i for i, line in enumerate(out) if line.startswith("m=video")), None)
    if video is None:
        return out
    extra = rng.choice([
        ["a=rid:h send", "a=rid:h send", "a=simulcast:send h;h"],
        ["a=rid:" + "q" * 300 + " send", "a=simulcast:send " + ";".join("r%d" % k for k in range(50))],
        ["a=simulcast:recv a;b", "a=rid:a recv"],
        ["a=simulcast:", "a=rid:"],
        ["a=extmap:99 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "a=extmap:99 urn:ietf:params:rtp-hdrext:sdes:mid"],
        ["a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "a=rid:l send", "a=simulcast:send l"],
    ])
    return out[:video + 1] + extra + out[video + 1:]


def garbage_lines(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    for _ in range(rng.randint(1, 5)):
        out.insert(rng.randrange(len(out) + 1),
                   rng.choice(["a=", "=", "m=video", "m=audio 9", "a=ssrc-group:FID", "a=ssrc:1",
                               "a=candidate:1 1 udp 1 999.1.1.1 9 typ host", "a=setup:bogus", "c=IN IP4",
                               "a=extmap:", "a=rtcp:", "b=AS:-5", "\x00\x01\x02", "a=msid:" + "m" * 100]))
    return out


MUTATIONS: tuple[Mutation, ...] = (
    delete_line, duplicate_line, swap_lines, flip_bytes, truncate, huge_attribute, many_media_sections,
    bad_fingerprint, bad_payload_types, bad_numbers, bad_ice, bad_direction, bad_bundle, bad_simulcast,
    garbage_lines,
)


def mutate(offer: str, seed: int) -> tuple[str, str]:
    """(mutated offer, a short name of what was done) for `seed`."""
    rng = random.Random(seed)
    lines = _lines(offer)
    names = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        m = rng.choice(MUTATIONS)
        lines = m(rng, lines) or lines[:1]
        names.append(m.__name__)
    return _join(lines), "+".join(names)


def mutated_offers(offers: list[str], count: int, seed: int = 0) -> Iterator[tuple[int, str, str]]:
    """`count` mutants (index, offer, what) of the given valid offers, in turn."""
    for i in range(count):
        text, what = mutate(offers[i % len(offers)], seed * 1_000_003 + i)
        yield i, text, what


RID_EXT = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


def simulcast(sdp: str) -> str:
    """An aiortc sendonly offer made to look like Chromium's simulcast one (RIDs, simulcast, the RID extension)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    out = []
    in_video = False
    for line in lines:
        out.append(line)
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        if in_video and line.startswith("a=mid:"):
            out += [f"a=extmap:10 {RID_EXT}", "a=rid:l send", "a=rid:m send", "a=rid:h send",
                    "a=simulcast:send l;m;h"]
    return "\r\n".join(x for x in out if x) + "\r\n"


async def base_offers() -> dict[str, list[str]]:
    """Real aiortc offers to mutate: a publisher's (plain and simulcast) and a viewer's (recvonly, sendrecv)."""
    publish = await offer("sendonly")
    return {"whip": [publish, simulcast(publish)], "whep": [await offer("recvonly"), await offer("sendrecv")]}

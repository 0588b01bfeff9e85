"""The DTLS role the server answers with: the DTLS server (setup:passive) wherever the offer leaves the choice,
so the offerer lists its SRTP profiles and the server picks AES-GCM; the offerer's own choice otherwise.
Real aiortc peer connections, offer and answer only."""
from __future__ import annotations

import re

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.webrtc import aiortc_adapter as adapter


async def answer_setup(offer_setup: str) -> str:
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("video", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        sdp = re.sub(r"a=setup:\w+", f"a=setup:{offer_setup}", offerer.localDescription.sdp)
        await answerer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        adapter.answer_as_dtls_server(answerer)
        answer = await answerer.createAnswer()
        return re.findall(r"a=setup:(\w+)", answer.sdp)[0]
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.parametrize("offered, answered", [("actpass", "passive"), ("active", "passive"),
                                               ("passive", "active")])
async def test_the_server_is_the_dtls_server_unless_the_offerer_wants_to_be(offered: str, answered: str) -> None:
    assert await answer_setup(offered) == answered

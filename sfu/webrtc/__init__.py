"""Peer connections: the only package that reaches into aiortc's and aioice's private seams
(aiortc_adapter, with a start-up self-test), the publisher and viewer sessions built on them, the SDP additions
aiortc lacks (simulcast answers, start bitrate), and the heap relief after bursts of closed sessions."""

"""Helpers shared by tests and benchmarks: generated media, real aiortc WHIP/WHEP peers, and peers negotiated
straight with an in-process SfuNode (node_peers)."""

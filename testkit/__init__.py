"""Helpers shared by tests and benchmarks: generated media and real aiortc WHIP/WHEP peers."""

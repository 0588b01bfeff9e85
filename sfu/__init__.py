"""Selective forwarding unit: forwards encoded RTP, never decodes on the forwarding path (the ladder excepted).
node.SfuNode is the facade signaling and the recorder use. Layers, lowest first: rtp (wire formats) ·
allocation (pure decisions) · ingest and forward (publisher and viewer side) · ladder · room · webrtc (peer
connections, the aiortc seams) · cascade (SFU-to-SFU links) · node. Never imports signaling or recorder."""

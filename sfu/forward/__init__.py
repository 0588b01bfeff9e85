"""The viewer side: one Consumer per viewer and track applies the layer plan to each packet (sequence and
timestamp munging, VP8 picture ids), repairs loss with RTX within a budget, and sends. May import sfu.rtp and
sfu.allocation; the transport reaches it through sfu.webrtc.aiortc_adapter's PacketTap."""

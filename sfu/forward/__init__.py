"""The viewer side: per viewer and track a SwitchPlanner (pure) decides each packet's fate and numbers, and a
Consumer applies the plan (rewrite, send), repairs loss with RTX within a budget, probes and reports. May import
sfu.rtp, sfu.allocation, sfu.congestion and sfu.ingest's value types; reaches its track through the
ConsumerOwner contract and the transport through sfu.webrtc.aiortc_adapter's PacketTap."""

"""Send-side bandwidth estimation for one viewer, in the manner of libwebrtc's GoogCC: what was sent (transport-wide
sequence numbers, send times, sizes), the viewer's transport-wide congestion control feedback, and from them a
delay-based detector (a queue: congestion), a loss-based controller that tolerates a link's own random loss, and
the probe verdicts the allocator reads.

Pure: bytes and times in, values out. Every call takes the monotonic time as an argument; nothing here touches a
clock, socket, asyncio or aiortc. Imports only sfu.rtp (the feedback packet's wire format).
"""

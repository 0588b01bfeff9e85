"""Wire formats, pure: RTP headers and extensions, RTCP building and reading, VP8/H.264 payload descriptors,
packetizing and depacketizing. Bytes in, values out: no clock, socket or asyncio. Imports nothing of the project
outside this package (aiortc only for its RTCP packet classes)."""

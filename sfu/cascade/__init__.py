"""SFU-to-SFU links: an origin sends each layer of a room once to an edge node (relay_out), the edge ingests
them as a simulcast publisher (relay_in); relay_map is the pure SSRC-to-layer map both ends exchange."""

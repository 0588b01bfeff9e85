"""The publisher side: what arrives from a publisher (or a relay link) per stream: reception statistics, NACKs
and keyframe requests toward the publisher, the ingest rate estimate, and the hand-off of each packet to its
track. May import sfu.rtp; reaches the room only through the feed it is given."""

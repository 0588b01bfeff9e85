"""The server-side simulcast ladder for one-layer publishers: the one deliberate decode and re-encode. A room
ladder decodes once on a worker thread and encodes each rung some viewer needs; a track ladder shows the rungs
to the allocator as layers. May import sfu.rtp and sfu.ingest."""

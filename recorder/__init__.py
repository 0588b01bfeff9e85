"""Lesson recorder and resource library: records lessons to WebM without transcoding, crash-safe, and keeps
the catalogue, thumbnails and chapters. session (one recording) and service (the server's view) on top of
media/ (pure), webm/ and store/; analysis runs as its own process."""

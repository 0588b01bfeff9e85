"""WebM/Matroska: EBML encoding and a bounded reader, and the writer that keeps a file playable as it grows,
finalizes it in milliseconds and repairs one cut short by a crash."""

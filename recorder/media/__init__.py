"""Pure media logic for the recorder: RTP timestamps to the recording's timeline, packets to encoded frames,
H.264 Annex-B to AVCC. No IO; time is passed in."""

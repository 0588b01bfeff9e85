"""Pure decisions: which layer a viewer gets (allocator: estimate, loss, probing, keyframe waits) and which
viewers are served first when a room's uplink is short (priority). Time is always an argument; no IO."""

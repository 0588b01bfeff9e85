"""The live lesson on this node: the room hub (each room's state and connections), the room WebSocket, and
room_media, which makes lesson changes (stage, microphones, lesson end, removals) happen in the media plane."""

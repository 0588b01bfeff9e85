"""The lesson model, pure: one room's lesson state (participants, hands, stage, microphones, chat), the room
WebSocket's wire format and its validation, and the durable snapshot of the state. No IO; time is passed in."""

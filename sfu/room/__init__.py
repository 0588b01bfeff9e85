"""A room and what it holds: feeds (the teacher's camera and screen, each classroom's camera, the stage), their
tracks and layers, the viewers, and the room timer that drives estimation and allocation ticks."""

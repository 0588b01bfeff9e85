"""Cluster mode: placement of rooms on nodes (pure), the Redis registry and heartbeat, forwarding of requests to a
room's node, node-to-node request signing, draining, lesson state in Redis, and the --workers supervisor."""

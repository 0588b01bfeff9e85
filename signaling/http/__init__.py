"""The HTTP layer around every endpoint: typed application keys, error answers, admission (rate limits and
capacity), X-Forwarded handling, TLS certificates (served, reloaded, self-signed) and the event-loop lag gauge."""

"""The doors: the ``cap-agent`` CLI and the aiohttp service (thin, no business logic)."""

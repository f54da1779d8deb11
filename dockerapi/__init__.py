"""estiba's Docker-compatible REST API: its own asyncio HTTP server (see http.py for why)."""

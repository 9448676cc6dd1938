"""The SSE live feed, `GET /api/live/events` (docs/live-feed.md)."""

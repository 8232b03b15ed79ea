"""How notifications reach browsers: the lean ASGI stream route, the hub, replay, limits and lifecycle."""

"""Peer (a): the seed tutorial, re-created faithfully (django-sse-tutorial.txt in shared/seed).

A Django project with the tutorial's ``Notification`` model and its ``notifications`` async view: session
auth with ``auth.get_user``, then a loop that queries undispatched notifications once per second and saves
each one it sends. Django runs each ASGI request's sync work on that request's own thread, so every open
stream holds its own database connection: "one poll and one DB connection per stream".
Differences: gunicorn + uvicorn instead of daphne (the same server settings as Beacon), a ``/healthz``
route, and notifications are inserted by the benchmark with SQL (as the admin would, but without needing a
database connection that the streams have used up).
"""

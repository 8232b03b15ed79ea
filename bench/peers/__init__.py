"""Peers measured beside Beacon under the same gunicorn + uvicorn settings (deploy/gunicorn.conf.py).

- ``tutorial``: a faithful re-creation of the seed tutorial (a Django async view that polls the database once
  per second per stream, on its own database connection per stream).
- ``starlette_app``: sse-starlette with an in-process broadcast.
- ``django_minimal``: a plain Django async ``StreamingHttpResponse`` with an in-process broadcast.

The in-process peers have no broker: each worker binds a UDP socket on loopback (``common.start_control``)
and the benchmark sends the broadcast payload to every worker, which fans it out to its own subscribers.
"""

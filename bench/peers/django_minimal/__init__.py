"""Peer (c): a minimal Django project whose one async view returns a ``StreamingHttpResponse``."""

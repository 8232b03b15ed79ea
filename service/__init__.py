"""Beacon: a multi-tenant notification service streaming over Server-Sent Events."""

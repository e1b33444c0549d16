"""The HTTP API over the engine and the registry (FastAPI); `create_app` builds the ASGI app."""

from lorahub.server.app import create_app

__all__ = ["create_app"]

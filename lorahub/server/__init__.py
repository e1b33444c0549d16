"""The HTTP API over the engine and the registry (FastAPI); `create_app` builds the ASGI app."""

from lorahub.server.app import AppOptions, create_app

__all__ = ["AppOptions", "create_app"]

"""lorahub.server."""

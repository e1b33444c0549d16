"""lorahub.registry."""

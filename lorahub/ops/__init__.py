"""lorahub.ops."""

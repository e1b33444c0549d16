"""lorahub.formats."""

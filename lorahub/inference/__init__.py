"""lorahub.inference."""

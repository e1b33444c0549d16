"""lorahub.training."""

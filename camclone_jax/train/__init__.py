"""Rectified-flow training (the trainer lands with the trainer issue)."""

"""Embedders, the service catalogue and the placer that puts texts into it."""

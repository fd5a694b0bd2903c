"""Transports that carry swarmd frames between nodes."""

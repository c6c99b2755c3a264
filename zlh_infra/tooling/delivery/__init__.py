"""Delivery tooling: the plan diff between two offline previews and the platform diagram."""

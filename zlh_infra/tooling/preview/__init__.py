"""Offline preview: run a stack's program in-process and check it like the engine does."""

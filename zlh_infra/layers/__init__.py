"""The three layers (control plane, edge, runtime), the host they share, and their guests."""

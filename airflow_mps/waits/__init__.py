"""I/O-free wait cores."""

"""Task objects for the generic training loop."""

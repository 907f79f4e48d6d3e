"""Helpers with no dependency on the rest of the package: atomic writes, JSON-safe values, JSON field checks,
the default logger, a spawned worker pool and stable seeds."""

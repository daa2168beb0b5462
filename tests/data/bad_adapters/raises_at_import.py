"""A vendor module whose import fails with something other than ImportError."""

raise RuntimeError("licence server unreachable")

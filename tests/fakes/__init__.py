"""Stand-ins for parts of the product that other branches build (used by tests only)."""

"""Transport-neutral serving core: models, scoring, ranking and sessions (no protobuf here)."""

"""Cost passes. Each module owns one cost dimension and holds all of that dimension's
per-op rules in one table keyed by op kind; an op with no rule is an error."""

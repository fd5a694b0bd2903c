"""swarmd.protocol: the sans-I/O core (pure, deterministic state machines)."""

"""Everything about the environment: manifest, lock, probes, snapshot, smoke checks, diff."""

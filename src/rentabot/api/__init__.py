"""HTTP interfaces: the original v1.0 contract, health, and (later) v2."""

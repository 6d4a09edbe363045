"""Channel adapters (one module per provider), agent surfaces, and sandbox fakes."""

"""Identity: users, the credential kinds clients present, and per-route auth."""

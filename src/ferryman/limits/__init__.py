"""How much a caller may use: rate limits, concurrency caps (budgets and credits later)."""

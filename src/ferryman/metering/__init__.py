"""What happened: usage extraction (tokens, cost) and, later, records and stats."""

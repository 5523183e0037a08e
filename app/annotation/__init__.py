"""Step: people rate triples. Campaigns, assignment (the hot path), quality and agreement, the
answer scale."""

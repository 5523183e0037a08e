"""The shared base every step and door stands on: settings, database, models, jobs, accounts."""

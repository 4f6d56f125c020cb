"""Use cases of rentabot: each one a single database transaction."""

"""Pure rules and types of rentabot: no I/O, no framework."""

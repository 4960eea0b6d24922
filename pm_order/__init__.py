"""pm-order: the service shell (configuration, store wiring, command line)."""

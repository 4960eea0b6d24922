"""The running service: configuration, store wiring, background work, the worker."""

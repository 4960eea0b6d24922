"""The command groups of `pm-order`, one module each; each has `register`."""

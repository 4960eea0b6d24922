"""The `pm-order` command line and the operator tools it runs (audit, event
archive, HTML report)."""

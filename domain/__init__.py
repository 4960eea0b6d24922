"""The transfer-order domain: aggregates, their events, the workflow and the service."""

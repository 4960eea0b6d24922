"""Read models: tables filled from the event log by the projector."""

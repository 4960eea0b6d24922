"""Every event announced on the cloud's message bus as an OpenStack notification."""

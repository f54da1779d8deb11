"""Handlers of the Docker Engine API, one module per kind of object."""

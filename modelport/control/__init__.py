"""Endpoint lifecycle: services behind the control-plane routes and the reconciler."""

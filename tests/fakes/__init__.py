"""Loopback test doubles of external services, speaking their real wire formats."""

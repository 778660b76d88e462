"""Providers driven directly against loopback fakes of their APIs."""

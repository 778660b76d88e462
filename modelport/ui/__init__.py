"""Serving UI and playground assets. Filled by the web-UI work; empty in the backbone."""

"""Inference and usage tables (Delta). Filled by the AI-gateway work; empty in the backbone."""

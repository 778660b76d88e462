"""The per-request pipeline: authentication, permissions, (later) limits, routing, guardrails."""

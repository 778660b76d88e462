"""Metrics history: each server process's minute rows of an endpoint's request counts, latency
histogram and replicas per served entity, and the leader's hour rows made from them after 48
hours (``store/metric_history.py``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_history",
        sa.Column(
            "endpoint_id",
            sa.String(32),
            sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("served_entity", sa.String(255), primary_key=True),
        sa.Column("step_s", sa.Integer, primary_key=True),
        sa.Column("start_ms", sa.BigInteger, primary_key=True),
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors_4xx", sa.BigInteger, nullable=False),
        sa.Column("errors_5xx", sa.BigInteger, nullable=False),
        sa.Column("statuses", sa.JSON, nullable=False),
        sa.Column("latency_counts", sa.JSON, nullable=False),
        sa.Column("latency_sum_s", sa.Float, nullable=False),
        sa.Column("replicas", sa.Float, nullable=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_metric_history_range", "metric_history", ["endpoint_id", "start_ms"])
    op.create_index("ix_metric_history_age", "metric_history", ["step_s", "start_ms"])


def downgrade() -> None:
    op.drop_index("ix_metric_history_age", table_name="metric_history")
    op.drop_index("ix_metric_history_range", table_name="metric_history")
    op.drop_table("metric_history")

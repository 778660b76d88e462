"""Safe rollouts: the endpoint event log, rollouts and their per-process tallies, replays, and
the rollout view the routing table reads from the endpoint row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("rollout", sa.JSON, nullable=True))
    op.create_table(
        "endpoint_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "endpoint_id", sa.String(32), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("config_version", sa.Integer, nullable=True),
        sa.Column("served_entity", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
    )
    op.create_index("ix_endpoint_events_endpoint", "endpoint_events", ["endpoint_id", "id"])
    op.create_table(
        "endpoint_rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "endpoint_id", sa.String(32), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("config_version", sa.Integer, nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("candidate", sa.String(255), nullable=False),
        sa.Column("incumbents", sa.JSON, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("step_started_ms", sa.BigInteger, nullable=True),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_ms", sa.BigInteger, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("last_evaluation", sa.JSON, nullable=True),
    )
    op.create_index("ix_endpoint_rollouts_endpoint", "endpoint_rollouts", ["endpoint_id", "created_ms"])
    op.create_table(
        "rollout_tallies",
        sa.Column(
            "rollout_id",
            sa.String(32),
            sa.ForeignKey("endpoint_rollouts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("entity", sa.String(255), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency", sa.JSON, nullable=False),
        sa.Column("compared", sa.BigInteger, nullable=False),
        sa.Column("agreed", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "endpoint_replays",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "endpoint_id", sa.String(32), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("candidate", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("report", sa.JSON, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_endpoint_replays_endpoint", "endpoint_replays", ["endpoint_id", "created_ms"])


def downgrade() -> None:
    op.drop_index("ix_endpoint_replays_endpoint", table_name="endpoint_replays")
    op.drop_table("endpoint_replays")
    op.drop_table("rollout_tallies")
    op.drop_index("ix_endpoint_rollouts_endpoint", table_name="endpoint_rollouts")
    op.drop_table("endpoint_rollouts")
    op.drop_index("ix_endpoint_events_endpoint", table_name="endpoint_events")
    op.drop_table("endpoint_events")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("rollout")

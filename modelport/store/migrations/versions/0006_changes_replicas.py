"""The store's change counter (bumped by every control-plane write), the replica registry, the
server processes sharing the store and the wake requests of entities scaled to zero.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    changes = op.create_table(
        "store_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(changes, [{"id": 1, "version": 1}])
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("config_version", sa.Integer, nullable=False),
        sa.Column("entity", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("address", sa.String(1024), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_replicas_endpoint", "replicas", ["endpoint_id", "config_version", "entity"])
    op.create_table(
        "processes",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("worker", sa.Integer, nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "replica_wakes",
        sa.Column("endpoint_id", sa.String(64), primary_key=True),
        sa.Column("config_version", sa.Integer, primary_key=True),
        sa.Column("entity", sa.String(255), primary_key=True),
        sa.Column("requested_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replica_wakes")
    op.drop_table("processes")
    op.drop_index("ix_replicas_endpoint", table_name="replicas")
    op.drop_table("replicas")
    op.drop_table("store_changes")

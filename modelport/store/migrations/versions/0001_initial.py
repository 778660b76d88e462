"""Initial schema: meta, principals, groups, tokens, endpoints, configs, ACLs.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "principals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_id", sa.Integer, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "member_id", sa.Integer, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "principal_id", sa.Integer, sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expiry_ms", sa.BigInteger, nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
    )
    op.create_table(
        "endpoints",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("route_optimized", sa.Boolean, nullable=False),
        sa.Column("budget_policy_id", sa.String(255), nullable=True),
        sa.Column("task", sa.String(64), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("ai_gateway", sa.JSON, nullable=True),
        sa.Column("rate_limits", sa.JSON, nullable=True),
        sa.Column("email_notifications", sa.JSON, nullable=True),
        sa.Column("telemetry_config", sa.JSON, nullable=True),
        sa.Column("config_update", sa.String(32), nullable=False),
        sa.Column("active_version", sa.Integer, nullable=True),
        sa.Column("pending_version", sa.Integer, nullable=True),
    )
    op.create_table(
        "endpoint_configs",
        sa.Column(
            "endpoint_id", sa.String(32), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "endpoint_acl",
        sa.Column(
            "endpoint_id", sa.String(32), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "principal_id", sa.Integer, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("level", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "endpoint_acl",
        "endpoint_configs",
        "endpoints",
        "tokens",
        "group_members",
        "principals",
        "meta",
    ):
        op.drop_table(table)

"""Secrets: scopes, encrypted values, scope ACLs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_scopes",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "secrets",
        sa.Column(
            "scope",
            sa.String(128),
            sa.ForeignKey("secret_scopes.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("last_updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "secret_acls",
        sa.Column(
            "scope",
            sa.String(128),
            sa.ForeignKey("secret_scopes.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "principal_id", sa.Integer, sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("permission", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("secret_acls", "secrets", "secret_scopes"):
        op.drop_table(table)

"""Grants on registered models, experiments and tables; content digests of model versions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "object_acl",
        sa.Column("object_type", sa.String(32), primary_key=True),
        sa.Column("object_id", sa.String(512), primary_key=True),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("level", sa.Integer, nullable=False),
    )
    op.create_index("ix_object_acl_principal", "object_acl", ["principal_id", "object_type"])
    op.create_table(
        "model_version_digests",
        sa.Column("model_name", sa.String(512), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_version_digests")
    op.drop_index("ix_object_acl_principal", "object_acl")
    op.drop_table("object_acl")

"""Each config version keeps the AI-gateway settings in effect with it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoint_configs") as batch:
        batch.add_column(sa.Column("ai_gateway", sa.JSON, nullable=True))
    # Versions made before this change get the endpoint's settings of today: the best known.
    op.execute(
        "UPDATE endpoint_configs SET ai_gateway = "
        "(SELECT ai_gateway FROM endpoints WHERE endpoints.id = endpoint_configs.endpoint_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("endpoint_configs") as batch:
        batch.drop_column("ai_gateway")

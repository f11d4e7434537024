"""wider caller keys: idempotency scope and refund source keys hold a whole caller identity

The idempotency scope is role + shop id (<= 64) + user id (<= 128), escaped so parts cannot collide
(app/keys.py): up to 205 characters, more than the 160 it had. A refund granted through the API is keyed
by "api" + that identity + the Idempotency-Key (<= 255).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("actor_id", existing_type=sa.String(length=160), type_=sa.String(length=255))
    with op.batch_alter_table("refunds") as batch:
        batch.alter_column("source_key", existing_type=sa.String(length=300), type_=sa.String(length=500))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.alter_column("source_key", existing_type=sa.String(length=500), type_=sa.String(length=300))
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("actor_id", existing_type=sa.String(length=255), type_=sa.String(length=160))

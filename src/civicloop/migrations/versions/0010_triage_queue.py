"""The queue of deferred intake (``triage_mode = "deferred"``, issue 9): requests stored and answered
201, waiting for the triage runner, which deletes each row in the transaction that triages it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 13:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from civicloop.core.db import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'triage_queue',
        sa.Column('request_id', sa.Integer(), nullable=False),
        sa.Column('enqueued_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['service_requests.id'],
                                name=op.f('fk_triage_queue_request_id_service_requests')),
        sa.PrimaryKeyConstraint('request_id', name=op.f('pk_triage_queue')),
    )


def downgrade() -> None:
    op.drop_table('triage_queue')

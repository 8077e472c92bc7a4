"""Keys of the duplicate check on service requests: ``text_key`` (digest of the normalised title and
body) and ``place_key`` (digest of the place label intake found), both indexed, so that intake asks
the database only for the open requests that can be a copy of a new one (issue 9). The open requests
already stored get both keys (the place label from their triage record); closed and rejected ones
are never compared and keep none (a reopened one is still found by its title, as before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OPEN = ('submitted', 'accepted', 'dispatched', 'in_progress', 'replied')
"""``requests.triage_steps.OPEN`` when this was written: the statuses the duplicate check reads."""
BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('service_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_key', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('place_key', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_service_requests_text_key'), ['text_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_requests_place_key'), ['place_key'], unique=False)
    _fill_open_requests()


def _fill_open_requests() -> None:
    from civicloop.intelligence.duplicates import place_key, text_key

    bind = op.get_bind()
    requests = sa.table('service_requests', sa.column('id', sa.Integer), sa.column('title', sa.String),
                        sa.column('description', sa.Text), sa.column('status', sa.String))
    triages = sa.table('triages', sa.column('request_id', sa.Integer), sa.column('place', sa.JSON))
    last = 0
    while True:
        rows = bind.execute(sa.select(requests.c.id, requests.c.title, requests.c.description)
                            .where(requests.c.id > last, requests.c.status.in_(OPEN))
                            .order_by(requests.c.id).limit(BATCH)).all()
        if not rows:
            return
        places = dict(bind.execute(sa.select(triages.c.request_id, triages.c.place)
                                   .where(triages.c.request_id.in_([row[0] for row in rows]))).all())
        updates = []
        for rid, title, description in rows:
            place = places.get(rid)
            label = place.get('label') if isinstance(place, dict) else None
            updates.append({'rid': rid, 't': text_key(title, description), 'p': place_key(label or None)})
        bind.execute(sa.text('UPDATE service_requests SET text_key = :t, place_key = :p WHERE id = :rid'), updates)
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('service_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_requests_place_key'))
        batch_op.drop_index(batch_op.f('ix_service_requests_text_key'))
        batch_op.drop_column('place_key')
        batch_op.drop_column('text_key')

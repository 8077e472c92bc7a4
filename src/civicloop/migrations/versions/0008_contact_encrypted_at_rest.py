"""The citizen's contact encrypted at rest: name and phone become Fernet tokens (text), an identity
card number joins them, the phone's blind index ``citizen_key`` and the erasure time are added, and
the rows already stored are encrypted with the configured keys (``core.crypto``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicloop.core.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('service_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('citizen_id_number', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('citizen_key', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('contact_erased_at', civicloop.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.alter_column('citizen_name', existing_type=sa.VARCHAR(length=100), type_=sa.Text(),
                              existing_nullable=False)
        batch_op.alter_column('citizen_phone', existing_type=sa.VARCHAR(length=40), type_=sa.Text(),
                              existing_nullable=False)
        batch_op.create_index(batch_op.f('ix_service_requests_citizen_key'), ['citizen_key'], unique=False)
    _encrypt_stored_rows()


def _encrypt_stored_rows() -> None:
    from civicloop.core import crypto

    bind = op.get_bind()
    table = sa.table('service_requests', sa.column('id', sa.Integer), sa.column('citizen_name', sa.Text),
                     sa.column('citizen_phone', sa.Text))
    last = 0
    while True:
        rows = bind.execute(sa.select(table.c.id, table.c.citizen_name, table.c.citizen_phone)
                            .where(table.c.id > last).order_by(table.c.id).limit(5000)).all()
        if not rows:
            return
        updates = [{"rid": rid, "n": crypto.rotate(name), "p": crypto.rotate(phone),
                    "k": crypto.citizen_key(phone) if phone and not phone.startswith(crypto.TOKEN_PREFIX) else None}
                   for rid, name, phone in rows if (name or phone)]
        if updates:
            bind.execute(sa.text("UPDATE service_requests SET citizen_name = :n, citizen_phone = :p, "
                                 "citizen_key = coalesce(:k, citizen_key) WHERE id = :rid"), updates)
        last = rows[-1][0]


def downgrade() -> None:
    # the contact stays encrypted: a downgrade keeps the tokens as text (decrypt with `civicloop privacy`)
    with op.batch_alter_table('service_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_requests_citizen_key'))
        batch_op.drop_column('contact_erased_at')
        batch_op.drop_column('citizen_key')
        batch_op.drop_column('citizen_id_number')

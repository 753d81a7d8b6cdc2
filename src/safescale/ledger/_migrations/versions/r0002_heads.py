"""Store what a transaction shares once: a ``heads`` table, and a narrower ``entries`` table.

Revision 0001 repeated the author, time, key id and signature of a transaction on every entry
row. This revision moves them to one ``heads`` row per transaction head, makes ``seq`` the
rowid on SQLite, and drops the index on ``kind``. The hashed entry header is unchanged, so
every entry hash and signature stays valid.

The copies of a transaction's fields on its entries were equal by construction; if any differ
(a tampered ledger), the upgrade stops and names them instead of keeping one copy silently.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from safescale._errors import Problem, UserError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SHARED = ("author", "time", "key_id", "signature")


def upgrade() -> None:
    conn = op.get_bind()
    differs = " OR ".join(f"e.{c} <> h.{c}" for c in SHARED)
    bad = conn.exec_driver_sql(
        "SELECT e.seq FROM entries e JOIN entries h ON h.seq = e.signed_seq "
        f"WHERE {differs} ORDER BY e.seq LIMIT 5"
    ).all()
    if bad:
        seqs = ", ".join(str(r[0]) for r in bad)
        raise UserError(
            Problem(
                f"entries {seqs} disagree with their signed head's author, time, key or "
                "signature; the ledger was changed: run `safescale ledger verify` with the "
                "previous safescale version, keep a copy, and restore from a good backup",
                field="entries",
            )
        )
    op.create_table(
        "heads",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    # One row per signed_seq: the head itself, or, where the head is gone (a ledger cut
    # short), the last entry that names it, so that verification still reports it.
    op.execute(
        "INSERT INTO heads (seq, author, time, key_id, signature) "
        "SELECT signed_seq, author, time, key_id, signature FROM entries "
        "WHERE seq IN (SELECT MAX(seq) FROM entries GROUP BY signed_seq)"
    )
    op.create_table(
        "entries_v2",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("signed_seq", SEQ, nullable=False),
    )
    kept = "seq, kind, record_id, model, payload, payload_sha256, prev_hash, entry_hash, signed_seq"
    op.execute(f"INSERT INTO entries_v2 ({kept}) SELECT {kept} FROM entries")
    op.drop_table("entries")
    op.rename_table("entries_v2", "entries")
    op.create_index("ix_entries_model", "entries", ["model"])


def downgrade() -> None:
    op.create_table(
        "entries_v1",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signed_seq", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.execute(
        "INSERT INTO entries_v1 (seq, kind, record_id, model, payload, payload_sha256, "
        "prev_hash, entry_hash, author, time, key_id, signed_seq, signature) "
        "SELECT e.seq, e.kind, e.record_id, e.model, e.payload, e.payload_sha256, e.prev_hash, "
        "e.entry_hash, h.author, h.time, h.key_id, e.signed_seq, h.signature "
        "FROM entries e JOIN heads h ON h.seq = e.signed_seq"
    )
    op.drop_table("entries")
    op.drop_table("heads")
    op.rename_table("entries_v1", "entries")
    op.create_index("ix_entries_kind", "entries", ["kind"])
    op.create_index("ix_entries_model", "entries", ["model"])

"""Hash the columns that queries select by: an entry header ``version`` column.

Entries written from this revision on have header version 2, whose hash covers the
``record_id`` and ``model`` columns (``ledger log --model``, reports and ``compute`` select by
them). The entries already stored keep version 1: their hashes and signatures stay valid, and
verification checks their ``record_id`` and ``model`` against their hashed payload instead.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: SQLite adds the column without rewriting the table.
    op.add_column(
        "entries", sa.Column("version", sa.SmallInteger, nullable=False, server_default="1")
    )


def downgrade() -> None:
    # Version-2 entries cannot be expressed without the column: refuse rather than lose them.
    conn = op.get_bind()
    if conn.exec_driver_sql("SELECT COUNT(*) FROM entries WHERE version <> 1").scalar_one():
        raise RuntimeError("entries with header version 2 cannot be downgraded to revision 0002")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("version")

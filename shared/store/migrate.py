"""`gatewayz migrate`: apply `infra/migrations/*.sql` in order, once each, to SQLite or PostgreSQL.

The same files are what the Supabase CLI applies (`supabase db push` with them as
`supabase/migrations`); applied versions are recorded in `schema_migrations` here, as the CLI
records them in its own table there.
"""

from __future__ import annotations

from pathlib import Path

from shared.store import Database, now_text

MIGRATIONS = Path(__file__).resolve().parents[2] / "infra" / "migrations"
_PG_BEGIN = "-- gatewayz:postgres-only begin"
_PG_END = "-- gatewayz:postgres-only end"


def for_dialect(script: str, dialect: str) -> str:
    if dialect == "postgres":
        return script
    # SQLite has no `ADD COLUMN IF NOT EXISTS`: the SQLite backend runs the plain form and lets a
    # re-run's "duplicate column" pass (shared.store.sqlite), so that a migration stays re-runnable.
    script = script.replace("ADD COLUMN IF NOT EXISTS", "ADD COLUMN")
    out, skipping = [], False
    for line in script.splitlines():
        if line.strip() == _PG_BEGIN:
            skipping = True
        elif line.strip() == _PG_END:
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out)


def read_migrations(directory: Path = MIGRATIONS) -> list[tuple[str, str]]:
    """(version, SQL) of every migration file, in order (read before any await: a CLI step)."""
    return [(path.stem, path.read_text("utf-8")) for path in sorted(directory.glob("*.sql"))]


async def migrate(db: Database, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply pending migrations; return the versions applied now."""
    migrations = read_migrations() if migrations is None else migrations
    await db.execute_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL);"
    )
    done = {r["version"] for r in await db.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for version, text in migrations:
        if version in done:
            continue
        script = for_dialect(text, db.dialect)
        await db.execute_script(script)
        await db.fetch(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t)",
            {"v": version, "t": now_text()},
        )
        applied.append(version)
    return applied

"""The change counter goes with the whole-answer response cache, its only reader.

Earlier versions kept `change_counter` up to date with a trigger on every table (installed
by `greenlight migrate` after the migrations, so they are not in any migration's state):
each write paid for a counter nobody reads now. This drops the triggers, the PostgreSQL
trigger function and the counter's table; nothing else changes.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

TRIGGER = "greenlight_count_changes"


async def drop_change_counter(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        # CASCADE drops the row and TRUNCATE triggers of every table, which call the function.
        await client.execute_script(
            f"DROP FUNCTION IF EXISTS {TRIGGER}() CASCADE; DROP TABLE IF EXISTS change_counter;"
        )
        return
    _, rows = await client.execute_query(
        f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND name GLOB '{TRIGGER}_*'"
    )
    for row in rows:
        await client.execute_script(f'DROP TRIGGER IF EXISTS "{row[0]}"')
    await client.execute_script("DROP TABLE IF EXISTS change_counter")


class Migration(migrations.Migration):
    dependencies = [("models", "0003_policy_versions")]

    initial = False

    operations = [ops.RunPython(drop_change_counter, reverse_code=ops.RunPython.noop)]

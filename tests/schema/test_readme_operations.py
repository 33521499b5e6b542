"""The README's GraphQL is the API's: every operation in its ```graphql blocks parses and
validates against the exported schema (schema.graphql), so a renamed field or argument
fails here before a reader copies it into GraphiQL."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_schema, parse, specified_rules, validate
from graphql.validation import LoneAnonymousOperationRule

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```graphql\n(.*?)```", re.S)
# A block holds several operations one after another, as a reader runs them one by one.
RULES = [rule for rule in specified_rules if rule is not LoneAnonymousOperationRule]


def test_every_readme_operation_validates_against_the_schema():
    schema = build_schema((ROOT / "schema.graphql").read_text())
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    assert len(blocks) > 10
    problems = []
    for number, block in enumerate(blocks, 1):
        try:
            document = parse(block)
        except Exception as error:  # a syntax error, with its line
            problems.append(f"block {number}: {error}")
            continue
        problems += [f"block {number}: {error.message}" for error in validate(schema, document, RULES)]
    assert not problems, "\n".join(problems)

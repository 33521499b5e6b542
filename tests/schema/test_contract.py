"""The served schema keeps every promise of the API contract (contract.graphql beside this file),
and schema.graphql is current."""

from pathlib import Path

from graphql import build_schema

from greenlight.api import schema
from greenlight.contract import differences

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = Path(__file__).with_name("contract.graphql")


def test_schema_has_every_name_of_the_contract():
    assert differences(CONTRACT.read_text(), build_schema(schema.as_str())) == []


def test_contract_checker_notices_a_missing_field():
    """The checker itself can fail: a schema lacking a contract field is reported."""
    contract = "type Query { me: String!  users(first: Int = 20): [String!]! }"
    ours = build_schema("type Query { me: String!  users(first: Int = 10): [String!]! }")
    assert differences(contract, ours) == ["Query.users(first) defaults to 10, not 20"]
    ours = build_schema("type Query { me: Int! }")
    assert differences(contract, ours) == ["Query.me is Int!, not String!", "Query.users is missing"]


def test_exported_schema_graphql_is_up_to_date():
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == schema.as_str() + "\n", "run `make schema` and commit schema.graphql"

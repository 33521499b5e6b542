"""GraphiQL's docs explain the whole API: every type, field, argument, input field and enum
value of the served schema has a description."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
)
from graphql import (
    build_schema as build_sdl,
)

from greenlight.api import build_schema

BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def undescribed(schema: GraphQLSchema) -> list[str]:
    """Everything without a description, introspection and GraphQL's own scalars excluded."""
    missing: list[str] = []
    for name, t in sorted(schema.type_map.items()):
        if name.startswith("__") or name in BUILT_IN_SCALARS:
            continue
        if not t.description:
            missing.append(name)
        if isinstance(t, (GraphQLObjectType, GraphQLInterfaceType)):
            for fname, field in t.fields.items():
                if not field.description:
                    missing.append(f"{name}.{fname}")
                missing += [f"{name}.{fname}({a})" for a, arg in field.args.items() if not arg.description]
        elif isinstance(t, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in t.fields.items() if not field.description]
        elif isinstance(t, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in t.values.items() if not value.description]
    return missing


def test_every_type_field_argument_and_enum_value_is_described():
    """GraphiQL documents every name of the served schema in the project's own words."""
    assert undescribed(build_schema()._schema) == []


def test_description_check_notices_what_is_undescribed():
    """The check itself can fail: each kind of undescribed name is reported."""
    sdl = """
    "q" type Query { "d" a(x: Int): E  b: String }
    enum E { "d" ONE TWO }
    input I { "d" p: Int  q: Int }
    type T { "d" id: ID }
    scalar DateTime
    """
    schema = build_sdl(sdl + '"d" type Mutation { "d" m(i: I): T }')
    assert undescribed(schema) == [
        "DateTime",
        "E",
        "E.TWO",
        "I",
        "I.q",
        "Mutation.m(i)",
        "Query.a(x)",
        "Query.b",
        "T",
    ]

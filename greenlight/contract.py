"""Compares the served schema with the API contract (tests/schema/contract.graphql): the names
Greenlight promised its clients."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)
from graphql.utilities import value_from_ast_untyped


def _default(arg) -> object:
    node = arg.ast_node.default_value if arg.ast_node else None
    if node is not None:
        return value_from_ast_untyped(node)
    return arg.default_value


def differences(contract_sdl: str, schema: GraphQLSchema) -> list[str]:
    """Every name, argument, type and default of the contract that the schema lacks."""
    contract = build_schema(contract_sdl)
    problems: list[str] = []
    for name, ctype in contract.type_map.items():
        if name.startswith("__"):
            continue
        ours = schema.type_map.get(name)
        if ours is None:
            problems.append(f"type {name} is missing")
            continue
        if type(ours) is not type(ctype):
            problems.append(f"type {name} is a {type(ours).__name__}, not {type(ctype).__name__}")
            continue
        if isinstance(ctype, GraphQLEnumType):
            missing = set(ctype.values) - set(ours.values)
            if missing:
                problems.append(f"enum {name} lacks {sorted(missing)}")
        if isinstance(ctype, (GraphQLObjectType, GraphQLInterfaceType)):
            for fname, field in ctype.fields.items():
                mine = ours.fields.get(fname)
                if mine is None:
                    problems.append(f"{name}.{fname} is missing")
                    continue
                if str(mine.type) != str(field.type):
                    problems.append(f"{name}.{fname} is {mine.type}, not {field.type}")
                for aname, arg in field.args.items():
                    marg = mine.args.get(aname)
                    if marg is None:
                        problems.append(f"{name}.{fname}({aname}) is missing")
                    elif str(marg.type) != str(arg.type):
                        problems.append(f"{name}.{fname}({aname}) is {marg.type}, not {arg.type}")
                    elif _default(marg) != _default(arg):
                        problems.append(
                            f"{name}.{fname}({aname}) defaults to {_default(marg)!r}, not {_default(arg)!r}"
                        )
                for aname, marg in mine.args.items():
                    if aname not in field.args and str(marg.type).endswith("!"):
                        problems.append(f"{name}.{fname}({aname}) is required but not in contract")
        if isinstance(ctype, GraphQLInputObjectType):
            for fname, field in ctype.fields.items():
                mine = ours.fields.get(fname)
                if mine is None:
                    problems.append(f"{name}.{fname} is missing")
                elif str(mine.type) != str(field.type):
                    problems.append(f"{name}.{fname} is {mine.type}, not {field.type}")
                elif _default(mine) != _default(field):
                    problems.append(f"{name}.{fname} defaults to {_default(mine)!r}, not {_default(field)!r}")
    return problems

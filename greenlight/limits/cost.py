"""The cost of an operation, computed from its document before anything runs: how many
objects its answer can hold at most (QUERY_TOO_COMPLEX over GREENLIGHT_MAX_QUERY_COST).

Each field that returns an object counts one object per time it can appear; list sizes
multiply down the tree:
- a field with a `first` argument (a page) makes the lists directly inside it (`edges`) that
  long: `first` as written or as its variable's value, else the argument's default, at most
  the largest page (MAX_PAGE; a larger `first` is refused by the resolver anyway);
- any other list counts UNPAGED_LIST objects (its typical size, e.g. an application's
  pipelines: one per environment);
- scalars and enums cost nothing (the token limit bounds how many are named), and so do
  introspection fields (their answer is the schema, the same for everyone).
Fragments count where they are spread (a spread cannot hide cost); @skip/@include are not
evaluated, so a field counts as if included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_list_type,
    value_from_ast,
    value_from_ast_untyped,
)

MAX_PAGE = 100
UNPAGED_LIST = 10


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """The most objects the chosen operation's answer can hold (0 if there is no such
    operation: execution refuses it then)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(operations) != 1:
        return 0
    return cost_of(schema, operations[0], fragments, variables or {})


def cost_of(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """The cost of one operation of a document whose fragments are `fragments`."""
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    walk = _Walk(schema, fragments, _with_defaults(operation, variables))
    return walk.selections(root, operation.selection_set, multiplier=1, page=None, spread=frozenset())


def _with_defaults(operation: OperationDefinitionNode, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables given, plus the defaults the operation declares for those left out."""
    values = dict(variables)
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


class _Walk:
    def __init__(self, schema: GraphQLSchema, fragments: Mapping, variables: dict[str, Any]) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selections(
        self, parent, selection_set: SelectionSetNode, *, multiplier: int, page: int | None, spread: frozenset
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection, multiplier, page, spread)
            elif isinstance(selection, InlineFragmentNode):
                on = selection.type_condition
                inner = self.schema.get_type(on.name.value) if on is not None else parent
                total += self.selections(
                    inner or parent, selection.selection_set, multiplier=multiplier, page=page, spread=spread
                )
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spread:  # unknown or cyclic: validation refuses it
                    continue
                inner = self.schema.get_type(fragment.type_condition.name.value) or parent
                total += self.selections(
                    inner, fragment.selection_set, multiplier=multiplier, page=page, spread=spread | {name}
                )
        return total

    def field(self, parent, node: FieldNode, multiplier: int, page: int | None, spread: frozenset) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 0
        definition = fields[name]
        if not is_composite_type(get_named_type(definition.type)):
            return 0
        own_page = self.page_size(definition, node)
        if is_list_type(get_nullable_type(definition.type)):
            length = own_page if own_page is not None else page if page is not None else UNPAGED_LIST
            count = multiplier * length
            inner_page = None
        else:
            count = multiplier
            inner_page = own_page
        if node.selection_set is None:
            return count
        inner = get_named_type(definition.type)
        return count + self.selections(
            inner, node.selection_set, multiplier=count, page=inner_page, spread=spread
        )

    def page_size(self, definition, node: FieldNode) -> int | None:
        """The `first` of a paged field, as this operation gives it; None if not paged."""
        argument = definition.args.get("first")
        if argument is None:
            return None
        value = Undefined
        for given in node.arguments or ():
            if given.name.value == "first":
                value = value_from_ast(given.value, argument.type, self.variables)
        if value is Undefined or value is None:
            value = argument.default_value
        if isinstance(value, bool) or not isinstance(value, int):
            return MAX_PAGE  # not a number: execution refuses it; never count it as small
        return min(max(value, 0), MAX_PAGE)

"""schemathesis hooks (SCHEMATHESIS_HOOKS): /graphql's custom scalars as literals, and a check.

Rows come near the demo models' shapes (4, 10 and 30 features) and far from them, so fuzzing
reaches both answered predictions and every kind of refused input.
"""

from __future__ import annotations

import dataclasses

import graphql
import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from tests.support.reference import IRIS_FEATURES

_NUMBER = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
)
_ANY_NAME = st.from_regex(r"\A[_A-Za-z][_0-9A-Za-z]{0,12}\Z")
_NAME = st.one_of(st.sampled_from(IRIS_FEATURES), _ANY_NAME)
_WIDTH = st.one_of(st.sampled_from([4, 10, 30]), st.integers(min_value=0, max_value=40))


def _field(name: str, value: graphql.ValueNode) -> graphql.ObjectFieldNode:
    return graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=value)


def _object(members: dict[str, graphql.ValueNode]) -> graphql.ObjectValueNode:
    return nodes.Object([_field(name, value) for name, value in members.items()])


_SCALAR = st.one_of(
    _NUMBER, st.text(max_size=8).map(nodes.String), st.booleans().map(nodes.Boolean)
)
_JSON = st.recursive(
    _SCALAR | st.just(nodes.Null),
    lambda inner: (
        st.lists(inner, max_size=4).map(nodes.List)
        | st.dictionaries(_ANY_NAME, inner, max_size=4).map(_object)
    ),
    max_leaves=20,
)
_ROW = _WIDTH.flatmap(lambda width: st.lists(_NUMBER, min_size=width, max_size=width))
_NAMED_ROW = st.dictionaries(_NAME, _NUMBER, max_size=12).map(_object)
_ROWS = st.lists(st.one_of(_ROW.map(nodes.List), _JSON), min_size=0, max_size=5).map(nodes.List)
_NAMED_ROWS = st.lists(st.one_of(_NAMED_ROW, _JSON), max_size=5).map(nodes.List)

_IRIS_ROWS = st.lists(
    st.lists(_NUMBER, min_size=4, max_size=4).map(nodes.List), min_size=1, max_size=5
).map(nodes.List)

schemathesis.graphql.scalar("FeatureRows", st.one_of(_ROWS, _JSON))
schemathesis.graphql.scalar("NamedFeatureRows", st.one_of(_NAMED_ROWS, _JSON))
schemathesis.graphql.scalar("JSON", _JSON)


def _aimed_at_iris(body: graphql.DocumentNode, rows: graphql.ListValueNode) -> graphql.DocumentNode:
    """The document with each predict field asking the default model (iris) for these rows."""
    argument = graphql.ArgumentNode(name=graphql.NameNode(value="rows"), value=rows)

    def aim(selection: graphql.SelectionNode) -> graphql.SelectionNode:
        if isinstance(selection, graphql.FieldNode) and selection.name.value == "predict":
            return dataclasses.replace(selection, arguments=(argument,))
        return selection

    def aim_operation(definition: graphql.DefinitionNode) -> graphql.DefinitionNode:
        if not isinstance(definition, graphql.OperationDefinitionNode):
            return definition
        selections = tuple(map(aim, definition.selection_set.selections))
        selection_set = dataclasses.replace(definition.selection_set, selections=selections)
        return dataclasses.replace(definition, selection_set=selection_set)

    return dataclasses.replace(body, definitions=tuple(map(aim_operation, body.definitions)))


@schemathesis.hook
def flatmap_body(ctx: object, body: graphql.DocumentNode) -> st.SearchStrategy:
    """Half the documents ask iris for rows of any finite numbers, so predictions are fuzzed too."""
    aim = st.tuples(st.booleans(), _IRIS_ROWS)
    return aim.map(lambda chosen: _aimed_at_iris(body, chosen[1]) if chosen[0] else body)


_EXTENSIONS = {"code", "status", "request_id", "details"}


@schemathesis.check
def no_5xx_answer(ctx: object, response: object, case: object) -> None:
    """No 5xx: neither the HTTP status nor any error's extensions.status (ml_app's code for it).

    schemathesis' own not_a_server_error reads an error with a `path` as a resolver failure
    unless it carries Apollo's codes; here every error carries ml_app's status, which says.
    """
    assert response.status_code < 500, response.status_code
    for error in response.json().get("errors") or ():
        extensions = error.get("extensions") or {}
        assert set(extensions) == _EXTENSIONS, error  # the one error shape, in every error
        assert extensions["status"] < 500, error

"""The shape of a trace from each span's parent, whatever state the parents arrived in."""

from __future__ import annotations

from api.trace_tree import tree_places


def test_children_and_depths_follow_the_parents():
    places = tree_places({"b": "a", "c": "b", "a": "", "d": "a"})
    assert {span: (place.depth, place.children, place.orphan) for span, place in places.items()} == {
        "a": (0, ["b", "d"], False), "b": (1, ["c"], False), "c": (2, [], False), "d": (1, [], False)}


def test_a_span_whose_parent_never_arrived_is_an_orphan_root_with_its_own_subtree():
    places = tree_places({"x": "gone", "y": "x"})
    assert (places["x"].depth, places["x"].orphan, places["x"].children) == (0, True, ["y"])
    assert (places["y"].depth, places["y"].orphan) == (1, False)


def test_a_parent_loop_is_cut_once_and_every_span_still_shows():
    places = tree_places({"p": "q", "q": "r", "r": "p", "self": "self"})
    assert set(places) == {"p", "q", "r", "self"}
    assert sorted(place.depth for name, place in places.items() if name != "self") == [0, 1, 2]
    assert sum(place.orphan for name, place in places.items() if name != "self") == 1
    assert places["self"].orphan and places["self"].children == []
    # every span is reachable from exactly one root
    reached = []
    def walk(span):
        reached.append(span)
        for child in places[span].children:
            walk(child)
    for root in (name for name, place in places.items() if place.depth == 0):
        walk(root)
    assert sorted(reached) == sorted(places)

"""The shape of a session's span tree from each span's parent: depth, children, orphans.

Spans arrive in any order and a parent may never arrive (a producer that lost it, a span of
another session named as parent): such a span is an orphan, shown at the top of the tree and
flagged, never dropped. A parent chain that loops is cut the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Place:
    depth: int = 0
    children: list[str] = field(default_factory=list)
    orphan: bool = False  # names a parent that is not in the session


def tree_places(parents: dict[str, str]) -> dict[str, Place]:
    """span id -> its place in the tree, for every span in `parents` (span id -> parent id, '' for a root)."""
    places = {span_id: Place() for span_id in parents}
    for span_id, parent in parents.items():
        if parent and parent in places and parent != span_id:
            places[parent].children.append(span_id)
        elif parent:
            places[span_id].orphan = True
    depths: dict[str, int] = {}
    for start in parents:
        chain: list[str] = []
        on_chain: set[str] = set()
        node = start
        # Walk up to a span whose depth is known or a root; a parent already on the walk is a loop.
        while node not in depths:
            parent = parents[node]
            if not parent or parent not in parents or parent == node:
                depths[node] = 0
            elif parent in on_chain:
                places[parent].children.remove(node)
                places[node].orphan = True
                depths[node] = 0
            else:
                chain.append(node)
                on_chain.add(node)
                node = parent
        depth = depths[node]
        for span_id in reversed(chain):
            depth += 1
            depths[span_id] = depth
    for span_id, place in places.items():
        place.depth = depths[span_id]
        place.children.sort()
    return places

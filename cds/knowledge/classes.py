"""The drug class graph: ingredient -> class -> broader class.

Edges point from the narrower node to the broader one, so the descendants of an ingredient
are its classes. The graph is kept as plain adjacency dicts (walked here, pickled small, and
cheap to import: a `cds check` from the compiled-engine cache never imports networkx); `graph`
gives it as a networkx DiGraph, built on first use, for authoring tools and tests. Look-ups
are memoized (cachetools) because rules ask the same question of the same ingredient for
every patient.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache, cachedmethod

if TYPE_CHECKING:
    import networkx as nx


def _reach(edges: dict[str, dict[str, None]], start: str) -> frozenset[str]:
    """Every node reachable from `start` along `edges`, `start` itself excluded (as
    networkx's descendants and ancestors)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(start)
    return frozenset(seen)


class ClassGraph:
    def __init__(self, classes: Iterable[dict[str, Any]], ingredients: Iterable[str]) -> None:
        classes = list(classes)
        #: node -> its attributes (kind: ingredient | class; name, source, status of a class)
        self._nodes: dict[str, dict[str, Any]] = {}
        #: node -> the broader nodes it belongs to / the narrower nodes in it (insertion order)
        self._up: dict[str, dict[str, None]] = {}
        self._down: dict[str, dict[str, None]] = {}
        for name in ingredients:
            self._add_node(name, kind="ingredient")
        for c in classes:
            self._add_node(c["id"], kind="class", name=c.get("name", c["id"]),
                           source=c.get("source"), status=c.get("status", "confirmed"))
        for c in classes:
            for parent in c.get("parents", []) or []:
                self._add_edge(c["id"], parent)
            for member in c.get("members", []) or []:
                self._add_edge(member, c["id"])
        self._init_cache()

    def _add_node(self, node: str, **attrs: Any) -> None:
        self._nodes.setdefault(node, {}).update(attrs)
        self._up.setdefault(node, {})
        self._down.setdefault(node, {})

    def _add_edge(self, narrower: str, broader: str) -> None:
        self._add_node(narrower)
        self._add_node(broader)
        self._up[narrower][broader] = None
        self._down[broader][narrower] = None

    def _init_cache(self) -> None:
        self._graph: nx.DiGraph | None = None
        self._cache: LRUCache[Any, frozenset[str]] = LRUCache(maxsize=4096)
        self._lock = threading.Lock()
        # Ingredients are asked about on every patient: answer them from a plain dict, filled
        # once (the graph never changes after construction); the LRU serves everything else.
        self._ingredient_classes: dict[str, frozenset[str]] = {
            n: _reach(self._up, n) for n, d in self._nodes.items() if d.get("kind") == "ingredient"}
        self._closures: dict[tuple[str, ...], frozenset[str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"nodes": self._nodes, "up": self._up, "down": self._down}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._nodes, self._up, self._down = state["nodes"], state["up"], state["down"]
        self._init_cache()

    @property
    def graph(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph (built once, on first use; do not modify it)."""
        if self._graph is None:
            import networkx as nx

            g: nx.DiGraph = nx.DiGraph()
            g.add_nodes_from(self._nodes.items())
            g.add_edges_from((a, b) for a, ups in self._up.items() for b in ups)
            self._graph = g
        return self._graph

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def node(self, node: str) -> dict[str, Any]:
        """A node's attributes (KeyError if there is no such node)."""
        return self._nodes[node]

    def kind(self, node: str) -> str | None:
        data = self._nodes.get(node)
        return data["kind"] if data else None

    @property
    def class_ids(self) -> list[str]:
        return sorted(n for n, d in self._nodes.items() if d["kind"] == "class")

    @property
    def ingredient_names(self) -> list[str]:
        return sorted(n for n, d in self._nodes.items() if d["kind"] == "ingredient")

    def ancestors(self, node: str) -> frozenset[str]:
        """Every class `node` belongs to, directly or through broader classes."""
        found = self._ingredient_classes.get(node)
        return found if found is not None else self._ancestors(node)

    @cachedmethod(attrgetter("_cache"), lock=attrgetter("_lock"))
    def _ancestors(self, node: str) -> frozenset[str]:
        if node not in self._nodes:
            return frozenset()
        return _reach(self._up, node)

    def closure(self, ingredients: tuple[str, ...]) -> frozenset[str]:
        """A medication's ingredients and every class they belong to (memoized per product:
        a panel asks it of the same few hundred ingredient sets over and over)."""
        found = self._closures.get(ingredients)
        if found is None:
            found = frozenset(ingredients).union(*(self.ancestors(i) for i in ingredients))
            if len(self._closures) >= 65536:
                self._closures.clear()
            self._closures[ingredients] = found
        return found

    def is_a(self, ingredient: str, cls: str) -> bool:
        return ingredient == cls or cls in self.ancestors(ingredient)

    def members(self, cls: str) -> frozenset[str]:
        """Ingredients in a class, directly or through its subclasses; an ingredient is itself."""
        if cls not in self._nodes:
            return frozenset()
        if self.kind(cls) == "ingredient":
            return frozenset({cls})
        return frozenset(n for n in _reach(self._down, cls) if self.kind(n) == "ingredient")

    def class_source(self, cls: str) -> str | None:
        data = self._nodes.get(cls)
        return data.get("source") if data else None

"""The drug class graph: ingredient -> class -> broader class, as a networkx DiGraph.

Edges point from the narrower node to the broader one, so `nx.descendants` of an
ingredient are its classes. Look-ups are memoized (cachetools) because rules ask the same
question of the same ingredient for every patient.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

import networkx as nx
from cachetools import LRUCache, cachedmethod


class ClassGraph:
    def __init__(self, classes: Iterable[dict[str, Any]], ingredients: Iterable[str]) -> None:
        g: nx.DiGraph = nx.DiGraph()
        for name in ingredients:
            g.add_node(name, kind="ingredient")
        for c in classes:
            g.add_node(c["id"], kind="class", name=c.get("name", c["id"]),
                       source=c.get("source"), status=c.get("status", "confirmed"))
        for c in classes:
            for parent in c.get("parents", []) or []:
                g.add_edge(c["id"], parent)
            for member in c.get("members", []) or []:
                g.add_edge(member, c["id"])
        self.graph = g
        self._init_cache()

    def _init_cache(self) -> None:
        self._cache: LRUCache[Any, frozenset[str]] = LRUCache(maxsize=4096)
        self._lock = threading.Lock()
        # Ingredients are asked about on every patient: answer them from a plain dict, filled
        # once (the graph never changes after construction); the LRU serves everything else.
        self._ingredient_classes: dict[str, frozenset[str]] = {
            n: frozenset(nx.descendants(self.graph, n))
            for n, d in self.graph.nodes(data=True) if d["kind"] == "ingredient"}
        self._closures: dict[tuple[str, ...], frozenset[str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"graph": self.graph}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.graph = state["graph"]
        self._init_cache()

    def kind(self, node: str) -> str | None:
        data = self.graph.nodes.get(node)
        return data["kind"] if data else None

    @property
    def class_ids(self) -> list[str]:
        return sorted(n for n, d in self.graph.nodes(data=True) if d["kind"] == "class")

    @property
    def ingredient_names(self) -> list[str]:
        return sorted(n for n, d in self.graph.nodes(data=True) if d["kind"] == "ingredient")

    def ancestors(self, node: str) -> frozenset[str]:
        """Every class `node` belongs to, directly or through broader classes."""
        found = self._ingredient_classes.get(node)
        return found if found is not None else self._ancestors(node)

    @cachedmethod(attrgetter("_cache"), lock=attrgetter("_lock"))
    def _ancestors(self, node: str) -> frozenset[str]:
        if node not in self.graph:
            return frozenset()
        return frozenset(nx.descendants(self.graph, node))

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
        if cls not in self.graph:
            return frozenset()
        if self.kind(cls) == "ingredient":
            return frozenset({cls})
        return frozenset(n for n in nx.ancestors(self.graph, cls) if self.kind(n) == "ingredient")

    def class_source(self, cls: str) -> str | None:
        data = self.graph.nodes.get(cls)
        return data.get("source") if data else None

"""The app's URL map: werkzeug's, with the answer for each (path, method) of a fixed route kept.

Werkzeug's matcher builds a recursive closure per request, a reference cycle (a function, five
cells, a tuple, a set) that only the cyclic garbage collector frees. Eight objects per request
were all the gateway's cyclic garbage: they set off a young-generation collection every ~60
requests, and each one walks every young object of every request in flight (a few hundred per
request), so the cost grew with concurrency (~20 us per request at 100 clients, measured with
``gc.callbacks`` under ``wrk``). A match is a function of the rules and its inputs, so the
matcher's answer for a route without variables, defaults or alias is kept and reused: a dict
lookup, no cycle. Anything else (a miss, a 404 or 405, a path with variables) is werkzeug's
own answer, computed each time and never kept, so a client cannot grow the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask
from werkzeug.routing import Map, Rule, RuleFactory
from werkzeug.routing.matcher import StateMachineMatcher


class _FixedRouteMatcher(StateMachineMatcher):
    """``StateMachineMatcher`` that reuses its match of a route with nothing to convert."""

    def __init__(self, merge_slashes: bool) -> None:
        super().__init__(merge_slashes)
        self._fixed: dict[tuple[str, str, str, bool], Rule] = {}

    def add(self, rule: Rule) -> None:
        self._fixed.clear()  # the rules changed: an earlier answer may not stand
        super().add(rule)

    def match(self, domain: str, path: str, method: str, websocket: bool) -> tuple[Rule, Any]:
        key = (domain, path, method, websocket)
        rule = self._fixed.get(key)
        if rule is not None:
            return rule, {}
        rule, values = super().match(domain, path, method, websocket)
        if not values and not rule.arguments and not rule.defaults and not rule.alias:
            self._fixed[key] = rule
        return rule, values


class GatewayMap(Map):
    """werkzeug's ``Map`` with the matcher above."""

    def __init__(
        self, rules: Iterable[RuleFactory] | None = None, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(None, *args, **kwargs)
        self._matcher = _FixedRouteMatcher(self._matcher.merge_slashes)
        for factory in rules or ():
            self.add(factory)


class GatewayFlask(Flask):
    """Flask with the gateway's URL map."""

    url_map_class = GatewayMap

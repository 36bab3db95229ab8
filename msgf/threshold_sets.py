"""Exit-threshold files as the commands write them, read in one place by every reader.

Four layouts hold thresholds:

- `msgf.engine.Thresholds.to_json()`: one set, `{"eta": [[...]], "budget": ..., ...}`; checkpoints
  and ONNX manifests store lists of these;
- a `threshold_search.Result` as JSON: one set, `{"thresholds": [[...]], "budget": ..., "sizes": ...}`;
- a `threshold_search.Front` as JSON: `{"results": [Result, ...]}`, one set per budget;
- the report of `msgf search-thresholds --out`: a Front whose results also carry their scores.

`threshold_sets` turns any of them into a list of sets in the first layout (plain dicts), and
`choose` picks one by its budget, naming the budgets there when it cannot. The torch engine
(`Thresholds.load`, `msgf infer`, `msgf evaluate`) and the onnxruntime predictor both read
through here, so a file one command writes is one every other reads. Imports neither torch
nor numpy at module level: `msgf infer --runtime onnx` runs without torch.
"""
from __future__ import annotations

import json
import math
import os

SEARCH_META = ("method", "criterion", "seed")  # what a search Result says about how it was found
LAYOUTS = ("msgf.engine.Thresholds JSON ({\"eta\": ...}), a threshold_search Result or Front, or the "
           "report of `msgf search-thresholds --out`")


def from_search_result(values: dict) -> dict:
    """A threshold_search Result (its `to_dict()`, or a row of a search report) as a set."""
    if not isinstance(values, dict):
        raise ValueError(f"expected a threshold_search Result (a mapping), got {type(values).__name__}")
    try:
        # No "rule" means a Result written before it existed (the strict c > eta), as in Thresholds.
        rule = {"rule": values["rule"]} if "rule" in values else {}
        return {"eta": values["thresholds"], **rule, "budget": values["budget"], "accuracy": values["accuracy"],
                "macs": values["macs"], "sizes": list(values["sizes"]),
                "meta": {k: values[k] for k in SEARCH_META if k in values}}
    except KeyError as err:
        raise ValueError(f"result has no {err.args[0]!r}; expected a threshold_search Result") from None


def threshold_sets(values, source: str = "thresholds") -> list[dict]:
    """Every threshold set in a parsed thresholds document (any layout above), each a dict with
    "eta" as `Thresholds.to_dict()` writes it. `source` names the document in errors."""
    if isinstance(values, dict) and "eta" in values:
        return [values]
    if isinstance(values, dict) and "thresholds" in values:
        return [from_search_result(values)]
    if isinstance(values, dict) and isinstance(values.get("results"), list):
        if not values["results"]:
            raise ValueError(f"{source}: the search report lists no results")
        sets = []
        for k, row in enumerate(values["results"]):
            try:
                sets.append(from_search_result(row))
            except ValueError as err:
                raise ValueError(f"{source}: results[{k}]: {err}") from None
        return sets
    raise ValueError(f"{source}: not a thresholds file; expected {LAYOUTS}")


def read_threshold_sets(path: str | os.PathLike) -> list[dict]:
    """The threshold sets of a JSON file in any layout above."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"thresholds: expected a JSON file path, got {type(path).__name__}")
    with open(path) as handle:
        text = handle.read()
    return threshold_sets(parse_json(text, os.fspath(path)), os.fspath(path))


def parse_json(text: str, source: str = "thresholds JSON") -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: thresholds JSON is malformed: {err}") from None


def choose(budgets: list, budget=None, *, source: str, remedy: str) -> int:
    """The index, in `budgets` (each set's budget in MACs, or None), of the set to use.

    budget: MACs as a number or a string like "650M"; it must match a set's budget within a
    relative 1e-6. Left out, the only set is used. `source` names where the sets are (a file,
    "the checkpoint") and `remedy` says how to get the missing thresholds, in the errors.
    """
    known = sorted(b for b in budgets if b is not None)
    have = ", ".join(_macs(b) for b in known) or "none"
    if budget is None:
        if len(budgets) == 1:
            return 0
        if not budgets:
            raise ValueError(f"{source} holds no thresholds; {remedy}")
        raise ValueError(f"{source} holds {len(budgets)} threshold sets (budgets: {have}); choose one by its "
                         f"budget (--budget, or budget= in Python)")
    from threshold_search import parse_budget

    budget = parse_budget(budget)  # a ValueError/TypeError naming the budget
    for index, candidate in enumerate(budgets):
        if candidate is not None and math.isclose(candidate, budget, rel_tol=1e-6):
            return index
    raise ValueError(f"no thresholds for budget {_macs(budget)} MACs in {source} (budgets there: {have}); {remedy}")


def _macs(value: float) -> str:
    from threshold_search import format_macs

    return format_macs(value)

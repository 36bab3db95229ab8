"""Budgeted early-exit threshold search for MS-GFNet trajectories (numpy + pygad, no torch).

Read a trajectory file, score threshold sets under the exit rule of Eq. 9, and search the
thresholds that maximise accuracy within an average MACs budget. See README.md.
"""
from threshold_search.budget import format_macs, parse_budget
from threshold_search.criteria import CRITERIA
from threshold_search.evaluate import Evaluator, correct_per_sample, evaluate, evaluate_many, exit_nodes
from threshold_search.plot import plot_fronts
from threshold_search.search import METHODS, Front, Result, search
from threshold_search.synthetic import make_trajectories
from threshold_search.trajectories import Trajectories
from threshold_search.tree import fixed_size_path, node_index

__version__ = "0.1.0"

__all__ = [
    "__version__", "CRITERIA", "METHODS", "Evaluator", "Front", "Result", "Trajectories", "correct_per_sample",
    "evaluate", "evaluate_many", "exit_nodes", "fixed_size_path", "format_macs", "make_trajectories", "node_index",
    "parse_budget", "plot_fronts", "search",
]

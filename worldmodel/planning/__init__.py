"""Planning with generated futures: sampling-based optimisers over action sequences (CEM, MPPI)
and the objectives that score a batch of candidate sequences with a world model."""

from worldmodel.planning.mpc import EpisodeResult, run_mpc
from worldmodel.planning.objectives import goal_distance, predicted_return, simulator_goal_distance, simulator_return
from worldmodel.planning.optimizers import CEM, MPPI, PLANNERS, PlannerConfig, make_planner

__all__ = ["CEM", "MPPI", "PLANNERS", "EpisodeResult", "PlannerConfig", "goal_distance", "make_planner", "predicted_return",
           "run_mpc", "simulator_goal_distance", "simulator_return"]

"""Planning with generated futures: sampling-based planners over action sequences (CEM, MPPI,
registered in PLANNERS), the objectives that score a batch of candidates with a world model or
the real simulator, model-predictive control, and the planning protocols. Every module of this
package is imported, so a new planner is one file here (a `GaussianPlanner` subclass registered
with `@PLANNERS.register(name)`)."""

from worldmodel.planning.mpc import EpisodeResult, run_mpc
from worldmodel.planning.objectives import goal_distance, predicted_return, simulator_goal_distance, simulator_return
from worldmodel.planning.optimizers import CEM, MPPI, PLANNERS, GaussianPlanner, Planner, PlannerConfig, make_planner
from worldmodel.planning.protocols import MODELS, PROTOCOLS, GoalProtocol, StateScoring, check_protocol, run_protocol
from worldmodel.planning.state_space import TaskReadout, dynamics_rollout, simulator_rollout, state_goal_distance, state_return
from worldmodel.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "CEM",
    "MODELS",
    "MPPI",
    "PLANNERS",
    "PROTOCOLS",
    "EpisodeResult",
    "GaussianPlanner",
    "GoalProtocol",
    "Planner",
    "PlannerConfig",
    "StateScoring",
    "TaskReadout",
    "check_protocol",
    "dynamics_rollout",
    "goal_distance",
    "make_planner",
    "predicted_return",
    "run_mpc",
    "run_protocol",
    "simulator_goal_distance",
    "simulator_return",
    "simulator_rollout",
    "state_goal_distance",
    "state_return",
]

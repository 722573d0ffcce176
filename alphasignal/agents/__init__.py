"""Stage 06 agents: Analyst, Strategist and Risk Manager factories over any provider, and the optimizer loop.

Importing this package registers the builtin (offline) engines for the agents' schemas.
"""

from .analyst import make_analyst
from .debate import run_debate
from .risk import hard_limit_breaches, make_risk_manager
from .schemas import AnalystReport, Ballot, Proposal, RiskReview, RiskVerdict, StrategistReply, Vote
from .strategist import make_strategist

__all__ = ["AnalystReport", "Ballot", "Proposal", "RiskReview", "RiskVerdict", "StrategistReply", "Vote",
           "hard_limit_breaches", "make_analyst", "make_risk_manager", "make_strategist", "run_debate"]

"""alphasignal: chart + news -> validated trading decisions, and honest strategy optimisation."""

__version__ = "0.1.0"

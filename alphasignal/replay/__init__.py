"""Stage 04 ``--replay``: the decisions of the signal pipeline, day by day, traded as one portfolio.

Modules: ``news`` (validated news file, causal look-ups), ``journal`` (decisions committed as made),
``portfolio`` (the bar loop: fills, stops, sizing, costs), ``stats`` (metrics, intervals, buy & hold and random
baselines, DSR), ``run`` (plan, decide, simulate), ``report`` (outputs). Imports nothing heavy.
"""

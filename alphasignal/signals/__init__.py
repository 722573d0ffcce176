"""Stage 04: chart image + news -> validated ``FinalDecision``.

Modules: ``schemas`` (Pydantic contracts), ``sentiment`` (offline lexicon news engine), ``rules`` (chart rules on
candles read by ``charts.read``), ``engines`` (registers both with the builtin provider), ``fusion`` (the policy),
``inputs`` (image/news validation), ``chains`` (LCEL: concurrent calls -> fusion), ``pipeline``
(``SignalPipeline``, batches, atomic writes), ``evaluate`` (``--eval``), ``demo`` and ``app`` (the CLI's logic).
Import the module you need; this package imports nothing heavy.
"""

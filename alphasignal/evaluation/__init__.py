"""The one home of return statistics, below the backtest, the replay and the optimizer (it imports none of them).

* ``metrics``: the Sharpe ratio (one definition, from the return sums) and every other return metric, from the
  backtest kernels' accumulators or from return series; bars per year; the risk-free rate per bar.
* ``bootstrap``: i.i.d., circular block and stationary resampling; percentile intervals; the Sharpe ratio's
  bootstrap interval.
* ``hac``: the Newey-West (HAC) standard error of a mean and the Sharpe ratio's HAC interval (Lo 2002).
* ``costs``: the cost model (fees and slippage in bps of traded value).
* ``overfitting``: the Deflated Sharpe Ratio and the Probability of Backtest Overfitting (CSCV).
* ``classification``, ``ladder``: the signal ladder's classification scores and table (stage 04's ``--compare``).
"""

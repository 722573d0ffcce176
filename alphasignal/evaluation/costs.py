"""The cost model: fees and slippage in basis points of traded value, per side.

A buy fills at ``price * (1 + slippage)`` and pays ``fee`` of the filled value on top; a sell fills at ``price *
(1 - slippage)`` and pays ``fee`` of it. Whole-equity trades (the backtest kernels, buy & hold) fold both into one
multiplier per side: buying costs ``price * (1 + slippage) * (1 + fee)`` per share, selling receives ``price *
(1 - slippage) * (1 - fee)``. The backtest engine, the replay portfolio and the replay's buy & hold anchor all
take their costs from :func:`cost_model`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    """Fee and slippage as fractions of traded value (5 bps = 0.0005), per side."""

    fee: float = 0.0
    slippage: float = 0.0

    @property
    def buy_mult(self) -> float:
        """Cash paid per unit of price for one share bought: ``(1 + slippage) * (1 + fee)``."""
        return (1.0 + self.slippage) * (1.0 + self.fee)

    @property
    def sell_mult(self) -> float:
        """Cash received per unit of price for one share sold: ``(1 - slippage) * (1 - fee)``."""
        return (1.0 - self.slippage) * (1.0 - self.fee)

    def fill_price(self, price: float, side: int) -> float:
        """The price a buy (``side`` 1) or a sell (-1) fills at: moved against the order by the slippage."""
        return price * (1 + side * self.slippage)

    def fee_on(self, value: float) -> float:
        """The fee on a filled value (price x shares)."""
        return value * self.fee


def cost_model(fees_bps: float, slippage_bps: float) -> CostModel:
    """The cost model of ``fees_bps`` and ``slippage_bps`` basis points per side."""
    return CostModel(fees_bps * 1e-4, slippage_bps * 1e-4)

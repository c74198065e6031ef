"""rebalance: work out the trades that bring the portfolio back to its target weights.

Input:   {"target": {"BTC": 0.5, "ETH": 0.3, "USDC": 0.2}, "min_trade_usd": 25, "dry_run": true}
Outputs: {"dry_run": true, "value_usd": 10000.0, "trades": [{"symbol": "BTC", "side": "buy",
          "amount_usd": 120.0}, ...]}

Holdings come from var/portfolio.json (a made-up portfolio is used when it is missing). Orders are
never sent anywhere: the exchange is simulated. Target weights that do not add up to 1 are a
mistake no retry can fix, so that exits 78.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root: common, agent_os
import agent_os  # noqa: E402
import common  # noqa: E402

DEFAULT_HOLDINGS_USD = {"BTC": 5200.0, "ETH": 2650.0, "SOL": 900.0, "USDC": 1250.0}
DEFAULT_TARGET = {"BTC": 0.5, "ETH": 0.3, "USDC": 0.2}


def holdings():
    path = common.VAR / "portfolio.json"
    if path.is_file():
        try:
            return {k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
        except (ValueError, AttributeError) as e:
            # A broken state file may be mid-write by another job: worth a retry (exit 1).
            raise RuntimeError(f"cannot read {path.name}: {e}") from e
    return dict(DEFAULT_HOLDINGS_USD)


@agent_os.task
def rebalance(data):
    common.demo_controls(data)
    agent_os.load_env()
    target = data.get("target", DEFAULT_TARGET)
    if not isinstance(target, dict) or not target:
        raise agent_os.BadInput("`target` must be an object of symbol -> weight")
    for symbol, weight in target.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise agent_os.BadInput(f"weight of {symbol} must be a non-negative number")
    total_weight = sum(target.values())
    if abs(total_weight - 1.0) > 0.001:
        raise agent_os.BadInput(f"target weights add up to {total_weight:g}, not 1")
    min_trade = common.number(data, "min_trade_usd", 25, minimum=0)
    dry_run = data.get("dry_run", True) is not False

    current = holdings()
    value = sum(current.values())
    print(f"portfolio value ${value:,.2f} across {len(current)} assets")
    trades = []
    for symbol in sorted(set(current) | set(target)):
        want = value * target.get(symbol, 0.0)
        have = current.get(symbol, 0.0)
        delta = round(want - have, 2)
        if abs(delta) < min_trade:
            continue
        side = "buy" if delta > 0 else "sell"
        trades.append({"symbol": symbol, "side": side, "amount_usd": abs(delta)})
        print(f"  {side:<4} {symbol:>5} ${abs(delta):,.2f}")
        current[symbol] = want

    if not trades:
        print("already balanced")
    elif dry_run:
        print("dry run: no orders placed")
    else:
        print(f"placed {len(trades)} simulated orders")
        common.VAR.mkdir(parents=True, exist_ok=True)
        (common.VAR / "portfolio.json").write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")

    return {"dry_run": dry_run, "value_usd": round(value, 2), "trades": trades}


if __name__ == "__main__":
    rebalance.main()

"""scan_market: measure each symbol's volatility and flag the ones above the threshold.

Input:   {"symbols": ["BTC", "ETH"], "threshold": 2.0, "seed": "2026-11-25", "force_spike": "ETH"}
Outputs: {"volatility": {"BTC": 1.2, ...}, "max_magnitude": 3.1, "spikes": ["ETH"], ...}

Market data is simulated: each symbol's move is a pseudo-random number derived from the symbol
and the seed (today's date by default), so the same input gives the same answer. Each spike is
a trading.volatility_spike event in Agent OS, whose workflows take it from there.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root: common, agent_os
import agent_os  # noqa: E402
import common  # noqa: E402


def simulated_move(symbol, seed):
    """A signed percentage move in [-3, 3], stable for a (symbol, seed) pair."""
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return round(unit * 6 - 3, 2)


def symbols_of(data):
    default = os.environ.get("TRADING_SYMBOLS", "BTC,ETH,SOL").split(",")
    symbols = data.get("symbols", default)
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s.strip() for s in symbols):
        raise agent_os.BadInput("`symbols` must be a non-empty list of ticker strings")
    return [s.strip().upper() for s in symbols]


@agent_os.task
def scan_market(data):
    common.demo_controls(data)
    agent_os.load_env()
    symbols = symbols_of(data)
    threshold = common.number(data, "threshold", 2.0, minimum=0)
    seed = str(data.get("seed", common.now_utc().date().isoformat()))
    forced = data.get("force_spike")
    if forced is not None:
        if not isinstance(forced, str) or not forced.strip():
            raise agent_os.BadInput("`force_spike` must be a symbol")
        forced = forced.strip().upper()
        if forced not in symbols:
            symbols.append(forced)

    print(f"scanning {len(symbols)} symbols (seed {seed}, threshold {threshold}%)")
    volatility = {}
    for symbol in symbols:
        move = simulated_move(symbol, seed)
        if symbol == forced and abs(move) <= threshold:
            move = round((threshold + 0.5 + abs(move) / 10) * (-1 if move < 0 else 1), 2)
        volatility[symbol] = move
        print(f"  {symbol:>6} {move:+.2f}%")

    spikes = [s for s, move in volatility.items() if abs(move) > threshold]
    max_magnitude = max(abs(m) for m in volatility.values())

    # The real service asks the model for a one-line market comment; here the call is simulated.
    if not os.environ.get("OPENAI_API_KEY"):
        print("no OPENAI_API_KEY in .env: using the simulated model")
    comment = f"{len(spikes)} of {len(symbols)} symbols moved more than {threshold}%."
    response = common.chat_completion(comment, 600 + 150 * len(symbols), 80 + 40 * len(spikes))
    common.record_openai(response, "comment", task="scan_market")
    if spikes:
        print("spike: " + ", ".join(f"{s} {volatility[s]:+.2f}%" for s in spikes))
    else:
        print("no spikes")

    scanned_at = common.rfc3339(common.now_utc())
    # One event per spike, keyed by run and symbol: a retried attempt emits it once.
    run = agent_os.run_id()
    for symbol in spikes:
        event = {"symbol": symbol, "move": volatility[symbol], "magnitude": abs(volatility[symbol]),
                 "threshold": threshold, "scanned_at": scanned_at}
        agent_os.emit("trading.volatility_spike", event, idempotency_key=f"{run}-spike-{symbol}" if run else None)
    summary = {"at": scanned_at, "volatility": volatility, "spikes": spikes, "threshold": threshold}
    common.VAR.mkdir(parents=True, exist_ok=True)
    (common.VAR / "last_scan.json").write_text(json.dumps(summary) + "\n", encoding="utf-8")
    with open(common.VAR / "scans.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(summary) + "\n")

    return {
        "volatility": volatility,
        "max_magnitude": max_magnitude,
        "spikes": spikes,
        "threshold": threshold,
        "scanned_at": scanned_at,
    }


if __name__ == "__main__":
    scan_market.main()

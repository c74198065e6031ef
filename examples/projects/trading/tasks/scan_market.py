"""scan_market: measure each symbol's volatility and flag the ones above the threshold.

Input:   {"symbols": ["BTC", "ETH"], "threshold": 2.0, "seed": "2026-11-25", "force_spike": "ETH"}
Outputs: {"volatility": {"BTC": 1.2, ...}, "max_magnitude": 3.1, "spikes": ["ETH"], ...}

Market data is simulated: each symbol's move is a pseudo-random number derived from the symbol
and the seed (today's date by default), so the same input gives the same answer.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentos_client as aos  # noqa: E402


def simulated_move(symbol, seed):
    """A signed percentage move in [-3, 3], stable for a (symbol, seed) pair."""
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return round(unit * 6 - 3, 2)


def symbols_of(data):
    default = os.environ.get("TRADING_SYMBOLS", "BTC,ETH,SOL").split(",")
    symbols = data.get("symbols", default)
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s.strip() for s in symbols):
        raise aos.BadInput("`symbols` must be a non-empty list of ticker strings")
    return [s.strip().upper() for s in symbols]


def scan(data):
    keys = aos.load_env()
    symbols = symbols_of(data)
    threshold = aos.number(data, "threshold", 2.0, minimum=0)
    seed = str(data.get("seed", aos.now_utc().date().isoformat()))
    forced = data.get("force_spike")
    if forced is not None:
        if not isinstance(forced, str) or not forced.strip():
            raise aos.BadInput("`force_spike` must be a symbol")
        forced = forced.strip().upper()
        if forced not in symbols:
            symbols.append(forced)

    aos.say(f"scanning {len(symbols)} symbols (seed {seed}, threshold {threshold}%)")
    volatility = {}
    for symbol in symbols:
        move = simulated_move(symbol, seed)
        if symbol == forced and abs(move) <= threshold:
            move = round((threshold + 0.5 + abs(move) / 10) * (-1 if move < 0 else 1), 2)
        volatility[symbol] = move
        aos.say(f"  {symbol:>6} {move:+.2f}%")

    spikes = [s for s, move in volatility.items() if abs(move) > threshold]
    max_magnitude = max(abs(m) for m in volatility.values())

    # The real service asks the model for a one-line market comment; here it is simulated.
    if "OPENAI_API_KEY" not in keys and "OPENAI_API_KEY" not in os.environ:
        aos.say("no OPENAI_API_KEY in .env: using the simulated model")
    tokens_in = 600 + 150 * len(symbols)
    tokens_out = 80 + 40 * len(spikes)
    aos.report_openai("comment", "gpt-4o-mini", tokens_in, tokens_out, task="scan_market")
    if spikes:
        aos.say("spike: " + ", ".join(f"{s} {volatility[s]:+.2f}%" for s in spikes))
    else:
        aos.say("no spikes")

    scanned_at = aos.rfc3339(aos.now_utc())
    # Each spike is an event in Agent OS: its workflows (volatility-to-memories) take it from here.
    for symbol in spikes:
        data = {"symbol": symbol, "move": volatility[symbol], "magnitude": abs(volatility[symbol]),
                "threshold": threshold, "scanned_at": scanned_at}
        aos.emit_event("trading.volatility_spike", data, f"{aos.run_id()}-spike-{symbol}")
    summary = {"at": scanned_at, "volatility": volatility, "spikes": spikes, "threshold": threshold}
    aos.VAR.mkdir(parents=True, exist_ok=True)
    (aos.VAR / "last_scan.json").write_text(json.dumps(summary) + "\n", encoding="utf-8")
    with open(aos.VAR / "scans.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(summary) + "\n")

    return {
        "volatility": volatility,
        "max_magnitude": max_magnitude,
        "spikes": spikes,
        "threshold": threshold,
        "scanned_at": scanned_at,
    }


if __name__ == "__main__":
    aos.main(scan)

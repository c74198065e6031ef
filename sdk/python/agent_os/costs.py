"""Cost records as Agent OS takes them: exact decimal amounts, and token counts read from the
responses of LLM providers' APIs (OpenAI, Anthropic, Google Gemini) so Agent OS can price them."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Mapping, Optional, Union

Amount = Union[Decimal, int, str]
"""What an amount may be given as: a ``Decimal``, an ``int``, or a decimal string. Never a
float, which cannot hold most decimal amounts exactly."""

_NANO = Decimal(1).scaleb(-9)
_MAX_AMOUNT = Decimal(1_000_000_000)


def format_amount(amount: Amount, name: str = "amount") -> str:
    """The exact decimal string Agent OS stores: at most 9 decimal places, from 0 to 1000000000.

    >>> format_amount(Decimal("0.0123"))
    '0.0123'
    """
    if isinstance(amount, bool) or isinstance(amount, float):
        raise TypeError(
            f"{name}={amount!r} is a {type(amount).__name__}; amounts must be exact: "
            f"pass Decimal({str(amount)!r}) or the string {str(amount)!r}"
        )
    if isinstance(amount, Decimal):
        d = amount
    elif isinstance(amount, int):
        d = Decimal(amount)
    elif isinstance(amount, str):
        try:
            d = Decimal(amount.strip())
        except InvalidOperation:
            raise ValueError(f"{name}={amount!r} is not a decimal number; write it like '0.0123'") from None
    else:
        raise TypeError(f"{name} must be a Decimal, an int or a decimal string, not {type(amount).__name__}")
    if not d.is_finite():
        raise ValueError(f"{name}={amount!r} is not a finite number; give the amount spent, e.g. Decimal('0.0123')")
    if d < 0:
        raise ValueError(f"{name}={amount!r} is negative; a cost is 0 or more")
    if d > _MAX_AMOUNT:
        raise ValueError(f"{name}={amount!r} is over 1000000000, the most one record holds; split it")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:
        exact = d.quantize(_NANO)
        if exact != d:
            raise ValueError(
                f"{name}={amount!r} has more than 9 decimal places, which Agent OS does not keep; "
                "round it first: amount.quantize(Decimal('0.000000001'))"
            )
        d = exact
    text = format(d, "f")
    return "0" if d == 0 and "." not in text else text.lstrip("-")


def format_time(at: Union[_dt.datetime, str, None]) -> str:
    """RFC 3339 in UTC with milliseconds; ``None`` is now. A naive datetime is refused."""
    if at is None:
        at = _dt.datetime.now(_dt.timezone.utc)
    if isinstance(at, str):
        return at
    if not isinstance(at, _dt.datetime):
        raise TypeError(f"at must be a datetime or an RFC 3339 string, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            "at is a naive datetime, which could be any zone; "
            "give an aware one, e.g. datetime.now(timezone.utc)"
        )
    utc = at.astimezone(_dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _count(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of tokens, not {value!r}")
    if value < 0:
        raise ValueError(f"{name}={value} is negative; token counts are 0 or more")
    return value


def build_record(
    service: str,
    amount: Optional[Amount] = None,
    *,
    model: Optional[str] = None,
    tokens_in: Optional[int] = None,
    tokens_out: Optional[int] = None,
    tokens_cached_in: Optional[int] = None,
    currency: Optional[str] = None,
    key_name: Optional[str] = None,
    idempotency_key: Optional[str] = None,
    at: Union[_dt.datetime, str, None] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
) -> Dict[str, Any]:
    """One cost record as JSON, checked here so a mistake is told at the call, not later."""
    if not isinstance(service, str) or not 1 <= len(service) <= 64:
        raise ValueError(f"service={service!r}: name the provider in 1 to 64 characters, e.g. 'openai'")
    record: Dict[str, Any] = {"service": service}
    if amount is not None:
        record["amount"] = format_amount(amount)
    tin = _count(tokens_in, "tokens_in")
    tout = _count(tokens_out, "tokens_out")
    cached = _count(tokens_cached_in, "tokens_cached_in")
    if amount is None and (not model or (tin is None and tout is None)):
        raise ValueError(
            f"a cost of {service!r} needs an amount, or a model and its tokens for Agent OS to price: "
            "pass amount=Decimal('0.0123'), or model='gpt-4o-mini', tokens_in=..., tokens_out=..."
        )
    if cached is not None and tin is not None and cached > tin:
        raise ValueError(
            f"tokens_cached_in={cached} is more than tokens_in={tin}; cached input tokens are a part of tokens_in"
        )
    if model is not None:
        if not isinstance(model, str) or not 1 <= len(model) <= 128:
            raise ValueError(f"model={model!r}: name the model in 1 to 128 characters")
        record["model"] = model
    if tin is not None:
        record["tokens_in"] = tin
    if tout is not None:
        record["tokens_out"] = tout
    if cached:
        record["tokens_cached_in"] = cached
    if currency is not None:
        if amount is None and currency != "USD":
            raise ValueError(
                f"currency={currency!r} with no amount: Agent OS prices tokens in USD; give the amount in "
                f"{currency}, or leave currency out"
            )
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
            raise ValueError(f"currency={currency!r}: give an ISO 4217 code in upper case, e.g. 'USD'")
        record["currency"] = currency
    if key_name is not None:
        if not isinstance(key_name, str) or len(key_name) > 128:
            raise ValueError(f"key_name={key_name!r}: at most 128 characters, by convention PROJECT-SERVICE")
        record["key_name"] = key_name
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 200:
            raise ValueError("idempotency_key: 1 to 200 characters, unique per project")
        record["idempotency_key"] = idempotency_key
    record["at"] = format_time(at)
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        try:
            size = len(json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        except (TypeError, ValueError) as e:
            raise TypeError(f"metadata must be JSON: {e}") from None
        if size > 4096:
            raise ValueError(f"metadata is {size} bytes as JSON; Agent OS keeps at most 4096: keep less")
        record["metadata"] = dict(metadata)
    if run_id:
        record["run_id"] = run_id
    return record


# LLM responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmUsage:
    """Tokens read from one LLM response. ``tokens_in`` counts every input token, cached ones
    included; ``tokens_cached_in`` is the part read from the provider's cache."""

    service: str
    model: Optional[str]
    tokens_in: int
    tokens_out: int
    tokens_cached_in: int


def _has(obj: Any, name: str) -> bool:
    if isinstance(obj, Mapping):
        return name in obj
    return hasattr(obj, name)


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _tokens(obj: Any, *names: str) -> int:
    value = _get(obj, *names) if obj is not None else None
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"usage field {names[0]} is {value!r}, not a token count")
    return value


_OPENAI_PREFIXES = ("gpt", "o1", "o3", "o4", "chatgpt", "text-", "davinci", "babbage", "codex", "computer-use")


def usage_from_response(response: Any, service: Optional[str] = None) -> LlmUsage:
    """Reads the service, model and tokens of an OpenAI (Chat Completions or Responses),
    Anthropic (Messages) or Google Gemini response, given as the SDK's object or as a dict."""
    gemini = _get(response, "usage_metadata", "usageMetadata")
    if gemini is not None:
        prompt = _tokens(gemini, "prompt_token_count", "promptTokenCount")
        out = _tokens(gemini, "candidates_token_count", "candidatesTokenCount")
        thoughts = _tokens(gemini, "thoughts_token_count", "thoughtsTokenCount")
        cached = _tokens(gemini, "cached_content_token_count", "cachedContentTokenCount")
        model = _get(response, "model_version", "modelVersion", "model")
        return LlmUsage(service or "google", _model(model), prompt, out + thoughts, cached)
    usage = _get(response, "usage")
    if usage is None:
        raise ValueError(
            f"{type(response).__name__} is not an LLM response this package knows: expected an OpenAI or "
            "Anthropic response with `usage`, or a Gemini one with `usage_metadata`; report its tokens with "
            "report_cost(service, model=..., tokens_in=..., tokens_out=...) instead"
        )
    model = _model(_get(response, "model"))
    if _get(usage, "prompt_tokens") is not None:
        details = _get(usage, "prompt_tokens_details")
        return LlmUsage(
            service or "openai",
            model,
            _tokens(usage, "prompt_tokens"),
            _tokens(usage, "completion_tokens"),
            _tokens(details, "cached_tokens"),
        )
    if _get(usage, "input_tokens") is None:
        raise ValueError(
            "the response's usage has neither prompt_tokens (OpenAI Chat Completions) nor input_tokens "
            "(OpenAI Responses, Anthropic); report its tokens with report_cost(...) instead"
        )
    anthropic = (
        _has(usage, "cache_read_input_tokens")
        or _has(usage, "cache_creation_input_tokens")
        or _get(response, "type") == "message"
        or (model or "").startswith("claude")
    )
    openai = (
        _has(usage, "input_tokens_details")
        or _get(response, "object") == "response"
        or (model or "").startswith(_OPENAI_PREFIXES)
    )
    if anthropic != openai:
        shape = "anthropic" if anthropic else "openai"
    elif service:
        shape = "anthropic" if service == "anthropic" else "openai"
    else:
        raise ValueError(
            "cannot tell whether this response is OpenAI's or Anthropic's; pass service='openai' or service='anthropic'"
        )
    kind = service or shape
    if shape == "anthropic":
        read = _tokens(usage, "cache_read_input_tokens")
        written = _tokens(usage, "cache_creation_input_tokens")
        return LlmUsage(kind, model, _tokens(usage, "input_tokens") + read + written, _tokens(usage, "output_tokens"), read)
    details = _get(usage, "input_tokens_details")
    return LlmUsage(
        kind, model, _tokens(usage, "input_tokens"), _tokens(usage, "output_tokens"), _tokens(details, "cached_tokens")
    )


def _model(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None

//! Token prices: what a model's input, cached input and output tokens cost, per million tokens,
//! in US dollars. A cost record that carries a model and its tokens but no amount is priced from
//! this table. Agent OS ships the list prices of the common OpenAI, Anthropic and Google models
//! (taken on [`BUILT_IN_AS_OF`]); `prices:` in config.yaml overrides and extends them.
//!
//! Amounts are exact: prices are nano-dollars per million tokens, the product is computed in
//! 128-bit integers and rounded half up to a nano-dollar.

use std::collections::BTreeMap;

use crate::cost::{MAX_AMOUNT_NANOS, NANOS_PER_UNIT, format_amount};

/// When the built-in prices were taken from the providers' price pages.
pub const BUILT_IN_AS_OF: &str = "2025-10-01";

/// The currency of every price: providers price tokens in US dollars.
pub const PRICE_CURRENCY: &str = "USD";

/// Where a price comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// Shipped with Agent OS, as listed on [`BUILT_IN_AS_OF`].
    BuiltIn,
    /// `prices:` in config.yaml.
    Config,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::BuiltIn => "built-in",
            PriceSource::Config => "config",
        }
    }
}

/// One model's price, in nano-dollars per million tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// The model name the table lists (records may name a dated version of it).
    pub model: String,
    pub input: i64,
    /// Input tokens read from the provider's cache; the input price when the provider has none.
    pub cached_input: i64,
    pub output: i64,
    pub source: PriceSource,
}

impl Price {
    /// What `tokens_in` (of which `cached_in` came from the cache) and `tokens_out` cost, in
    /// nano-dollars; an error when the amount is beyond what one record may carry.
    pub fn amount(&self, tokens_in: i64, tokens_out: i64, cached_in: i64) -> Result<i64, String> {
        let fresh = i128::from(tokens_in.max(0) - cached_in.clamp(0, tokens_in.max(0)));
        let cached = i128::from(cached_in.clamp(0, tokens_in.max(0)));
        let per_million = fresh * i128::from(self.input)
            + cached * i128::from(self.cached_input)
            + i128::from(tokens_out.max(0)) * i128::from(self.output);
        let nanos = (per_million + 500_000) / 1_000_000;
        i64::try_from(nanos).ok().filter(|n| *n <= MAX_AMOUNT_NANOS).ok_or_else(|| {
            format!("{tokens_in} + {tokens_out} tokens of {} cost more than one record may carry", self.model)
        })
    }

    /// Where the price was taken: `built-in 2025-10-01` or `config`.
    pub fn origin(&self) -> String {
        match self.source {
            PriceSource::BuiltIn => format!("built-in {BUILT_IN_AS_OF}"),
            PriceSource::Config => "config".into(),
        }
    }
}

/// (model, input, cached input, output): US dollars per million tokens, list prices for
/// standard (not batch or priority) processing. Google's tiered models are listed at their
/// price for prompts up to 200k tokens.
const BUILT_IN: &[(&str, &str, &str, &str)] = &[
    // OpenAI
    ("gpt-5", "1.25", "0.125", "10"),
    ("gpt-5-mini", "0.25", "0.025", "2"),
    ("gpt-5-nano", "0.05", "0.005", "0.40"),
    ("gpt-4.1", "2", "0.50", "8"),
    ("gpt-4.1-mini", "0.40", "0.10", "1.60"),
    ("gpt-4.1-nano", "0.10", "0.025", "0.40"),
    ("gpt-4o", "2.50", "1.25", "10"),
    ("gpt-4o-mini", "0.15", "0.075", "0.60"),
    ("o1", "15", "7.50", "60"),
    ("o3", "2", "0.50", "8"),
    ("o3-mini", "1.10", "0.55", "4.40"),
    ("o4-mini", "1.10", "0.275", "4.40"),
    ("gpt-3.5-turbo", "0.50", "0.50", "1.50"),
    // Anthropic (cached input: a cache read)
    ("claude-opus-4-1", "15", "1.50", "75"),
    ("claude-opus-4", "15", "1.50", "75"),
    ("claude-sonnet-4-5", "3", "0.30", "15"),
    ("claude-sonnet-4", "3", "0.30", "15"),
    ("claude-3-7-sonnet", "3", "0.30", "15"),
    ("claude-3-5-sonnet", "3", "0.30", "15"),
    ("claude-haiku-4-5", "1", "0.10", "5"),
    ("claude-3-5-haiku", "0.80", "0.08", "4"),
    ("claude-3-haiku", "0.25", "0.03", "1.25"),
    // Google
    ("gemini-2.5-pro", "1.25", "0.31", "10"),
    ("gemini-2.5-flash", "0.30", "0.075", "2.50"),
    ("gemini-2.5-flash-lite", "0.10", "0.025", "0.40"),
    ("gemini-2.0-flash", "0.10", "0.025", "0.40"),
    ("gemini-2.0-flash-lite", "0.075", "0.075", "0.30"),
];

/// The prices Agent OS uses: the built-in list with config.yaml's `prices:` over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceTable {
    /// By lower-case model name.
    prices: BTreeMap<String, Price>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::built_in()
    }
}

impl PriceTable {
    /// The shipped list alone.
    pub fn built_in() -> PriceTable {
        let mut prices = BTreeMap::new();
        for (model, input, cached, output) in BUILT_IN {
            let nanos = |d: &str| crate::cost::parse_amount(d).unwrap_or(0);
            prices.insert(
                (*model).to_string(),
                Price {
                    model: (*model).to_string(),
                    input: nanos(input),
                    cached_input: nanos(cached),
                    output: nanos(output),
                    source: PriceSource::BuiltIn,
                },
            );
        }
        PriceTable { prices }
    }

    /// Adds or replaces a price (config.yaml's `prices:`).
    pub fn set(&mut self, price: Price) {
        self.prices.insert(price.model.to_lowercase(), price);
    }

    /// Every price, by model name.
    pub fn all(&self) -> impl Iterator<Item = &Price> {
        self.prices.values()
    }

    /// The price of `model` as a provider names it: the exact name, else without a provider
    /// prefix (`openai/gpt-4o`, `models/gemini-2.5-pro`) and a version suffix
    /// (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-20250514`, `-latest`, `@20240620`,
    /// `-001`). An unknown model has no price: it is never counted as free.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        let lower = model.trim().to_lowercase();
        if let Some(p) = self.prices.get(&lower) {
            return Some(p);
        }
        let base = lower.rsplit('/').next().unwrap_or(&lower);
        let base = base.split('@').next().unwrap_or(base);
        self.prices.get(base).or_else(|| self.prices.get(without_version(base)))
    }
}

/// `name` without a trailing date or version: `-2024-07-18`, `-20250514`, `-latest`, `-001`,
/// `-preview-05-20`.
fn without_version(name: &str) -> &str {
    let mut rest = name;
    loop {
        let Some((head, tail)) = rest.rsplit_once('-') else { return rest };
        let all_digits = !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit());
        let versionish = tail == "latest" || tail == "preview" || tail == "exp" || (all_digits && tail.len() != 1);
        // `gpt-4o-mini-2024-07-18` ends in three numeric parts; `o3-mini` and `gpt-5` keep
        // their one-digit generation number.
        if !versionish || head.is_empty() {
            return rest;
        }
        rest = head;
    }
}

/// Formats a nano-dollars-per-million price as a decimal string (`"0.15"`).
pub fn format_price(nanos: i64) -> String {
    let text = format_amount(nanos);
    if nanos % NANOS_PER_UNIT == 0 { text.trim_end_matches(".00").to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_tokens_exactly_with_cached_input_at_its_own_rate() {
        let t = PriceTable::built_in();
        let p = t.lookup("gpt-4o-mini").unwrap();
        // 1000 in at 0.15/M + 500 out at 0.60/M = 0.00015 + 0.0003
        assert_eq!(p.amount(1000, 500, 0), Ok(450_000));
        // 400 of the 1000 from the cache at 0.075/M: 600 * 0.15 + 400 * 0.075 + 500 * 0.60
        assert_eq!(p.amount(1000, 500, 400), Ok(90_000 + 30_000 + 300_000));
        assert_eq!(p.amount(1, 0, 0), Ok(150));
        // Rounded half up to a nano-dollar: a price with more than six decimals.
        let tiny = Price { input: 400, cached_input: 400, output: 500, ..p.clone() };
        assert_eq!(tiny.amount(1000, 0, 0), Ok(0));
        assert_eq!(tiny.amount(0, 1000, 0), Ok(1));
        assert!(p.amount(i64::MAX, i64::MAX, 0).is_err());
    }

    #[test]
    fn finds_a_model_by_the_names_providers_answer_with() {
        let t = PriceTable::built_in();
        for (asked, listed) in [
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("GPT-4o", "gpt-4o"),
            ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
            ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            ("models/gemini-2.5-pro", "gemini-2.5-pro"),
            ("gemini-2.0-flash-001", "gemini-2.0-flash"),
            ("o3-mini-2025-01-31", "o3-mini"),
            ("gpt-5-nano", "gpt-5-nano"),
        ] {
            assert_eq!(t.lookup(asked).map(|p| p.model.as_str()), Some(listed), "{asked}");
        }
        for unknown in ["gpt-4o-mini-tts", "llama-3-70b", "my-finetune", "", "-", "gpt"] {
            assert!(t.lookup(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn config_prices_replace_and_extend_the_built_in_ones() {
        let mut t = PriceTable::built_in();
        t.set(Price {
            model: "gpt-4o-mini".into(),
            input: 1_000_000_000,
            cached_input: 1_000_000_000,
            output: 2_000_000_000,
            source: PriceSource::Config,
        });
        t.set(Price {
            model: "My-Finetune".into(),
            input: 3_000_000_000,
            cached_input: 3_000_000_000,
            output: 12_000_000_000,
            source: PriceSource::Config,
        });
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18").unwrap().source, PriceSource::Config);
        assert_eq!(t.lookup("my-finetune").unwrap().amount(1_000_000, 0, 0), Ok(3_000_000_000));
        assert_eq!(format_price(150_000_000), "0.15");
        assert_eq!(format_price(3_000_000_000), "3");
    }
}

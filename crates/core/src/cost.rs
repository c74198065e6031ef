//! Money as exact decimals: amounts are parsed from decimal strings into integer nano-units
//! (10⁻⁹ of the currency unit), so totals are exact sums of integers, never floats.

use crate::text::text_enum;

text_enum! {
    /// How a cost record reached the ledger: pushed over the API, or pulled by the cost probe.
    pub enum CostSource("cost source") {
        Api = "api",
        Probe = "probe",
    }
}

text_enum! {
    /// What cost totals are grouped by.
    pub enum GroupBy("grouping") {
        Project = "project",
        Service = "service",
        Key = "key",
        Model = "model",
        /// UTC calendar days.
        Day = "day",
        /// UTC calendar months (rolled up from days).
        Month = "month",
    }
}

/// Nano-units per currency unit.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// Largest amount a single record may carry (one billion units), far below i64 overflow even
/// when millions of records are summed.
pub const MAX_AMOUNT_NANOS: i64 = 1_000_000_000 * NANOS_PER_UNIT;

/// Parses a non-negative plain decimal such as `"0.0123"` or `"12"` into nano-units: digits,
/// then optionally a point and more digits. At most nine fractional digits; no spaces, sign,
/// exponent, thousands separators, leading point (`.5`) or trailing point (`1.`), so an amount
/// means the same to every reader of the ledger.
pub fn parse_amount(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("amount is empty; write a decimal such as \"0.25\"".into());
    }
    if s.trim_start().starts_with('-') {
        return Err(format!("amount {s:?} is negative; costs are never negative"));
    }
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err(format!("amount {s:?} is not a plain decimal; write e.g. \"0.25\", \"1\" or \"1.5\""));
    }
    let frac = frac.unwrap_or("");
    if frac.len() > 9 {
        return Err(format!("amount {s:?} has more than 9 decimal places"));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("amount {s:?} is too large"))?;
    let mut frac_nanos: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    let nanos = whole
        .checked_mul(NANOS_PER_UNIT)
        .and_then(|w| w.checked_add(frac_nanos))
        .filter(|n| *n <= MAX_AMOUNT_NANOS)
        .ok_or_else(|| format!("amount {s:?} is too large (at most 1000000000)"))?;
    Ok(nanos)
}

/// Formats nano-units as a decimal string without trailing zeros (at least two decimals).
pub fn format_amount(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let whole = n / NANOS_PER_UNIT as u64;
    let frac = n % NANOS_PER_UNIT as u64;
    let mut frac_text = format!("{frac:09}");
    while frac_text.len() > 2 && frac_text.ends_with('0') {
        frac_text.pop();
    }
    format!("{sign}{whole}.{frac_text}")
}

/// Active ISO 4217 currency codes.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR \
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR \
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK \
SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES \
VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// Checks an ISO 4217 code (upper case, e.g. `USD`).
pub fn check_currency(code: &str) -> Result<(), String> {
    if code.len() == 3 && CURRENCIES.split_whitespace().any(|c| c == code) {
        Ok(())
    } else {
        Err(format!("currency {code:?} is not an ISO 4217 code; use e.g. \"USD\" or \"EUR\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(parse_amount("0.0123"), Ok(12_300_000));
        assert_eq!(parse_amount("12"), Ok(12 * NANOS_PER_UNIT));
        assert_eq!(parse_amount("0.5"), Ok(500_000_000));
        assert_eq!(parse_amount("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_amount("0.000000001"), Ok(1));
        assert_eq!(parse_amount("1000000000"), Ok(MAX_AMOUNT_NANOS));
    }

    #[test]
    fn amounts_that_are_not_plain_decimals_are_refused() {
        for bad in [
            "",
            "-1",
            "1e3",
            "1,000",
            "abc",
            ".",
            "0.0000000001",
            "1000000001",
            "NaN",
            "+1",
            " 1",
            "1 ",
            "1.",
            ".5",
            "1..2",
            " -1",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_amounts() {
        assert_eq!(format_amount(12_300_000), "0.0123");
        assert_eq!(format_amount(2 * NANOS_PER_UNIT), "2.00");
        assert_eq!(format_amount(1), "0.000000001");
    }

    #[test]
    fn currencies() {
        assert!(check_currency("USD").is_ok());
        assert!(check_currency("usd").is_err());
        assert!(check_currency("XYZ").is_err());
    }
}

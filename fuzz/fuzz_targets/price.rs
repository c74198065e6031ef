//! Pricing a cost record's model (untrusted: a project names any model and token counts): a
//! lookup never panics, finds only a listed model's price, and an amount is exact and bounded or
//! a clear error, never an overflow.
#![no_main]

use agent_os_core::cost::MAX_AMOUNT_NANOS;
use agent_os_core::price::PriceTable;
use agent_os_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (counts, rest) = data.split_at(data.len().min(24));
    let Some(model) = text(rest) else { return };
    let table = PriceTable::built_in();
    let Some(price) = table.lookup(model) else { return };
    assert!(table.all().any(|p| p == price), "{model:?} found a price the table does not list");
    let mut n = [0i64; 3];
    for (i, chunk) in counts.chunks(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        n[i] = i64::from_le_bytes(bytes);
    }
    if let Ok(amount) = price.amount(n[0], n[1], n[2]) {
        assert!((0..=MAX_AMOUNT_NANOS).contains(&amount), "{amount} out of range for {n:?}");
    }
});

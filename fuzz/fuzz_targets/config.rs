//! Agent OS's own `config.yaml`: a rejected file names each problem at a place inside the text;
//! an accepted one names only channels whose URLs are written (their `${VAR}`s resolved later).
#![no_main]

use agent_os_core::channel;
use agent_os_core::config::Config;
use agent_os_fuzz::{check_errors, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    match Config::parse("config.yaml", text) {
        Err(e) => check_errors(text, &e),
        Ok(c) => {
            let bind = c.bind.as_deref();
            assert!(
                bind.is_none_or(|b| b.parse::<std::net::SocketAddr>().is_ok()),
                "an accepted bind {bind:?} that cannot be bound"
            );
            assert!(c.max_concurrent_runs > 0, "an accepted config that runs nothing");
            for (name, url) in &c.channels {
                assert!(!name.is_empty() && !url.is_empty(), "channel {name:?} = {url:?}");
                // What the config check promised: some value for its `${VAR}`s makes it parse.
                let parses = ["0", "whsec_cGxhY2Vob2xkZXIta2V5"].iter().any(|v| {
                    channel::expand(url, &|_| Some((*v).to_string())).and_then(|u| channel::parse(name, &u)).is_ok()
                });
                assert!(parses, "an accepted config holds the channel URL {url:?}, which never parses");
            }
        }
    }
});

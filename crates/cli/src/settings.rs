//! Where `serve` takes its listen address, database and public URL from. Each comes from the
//! first of: a flag, Agent OS's own environment variable, `config.yaml`, the hosting platform's
//! variable (`PORT`, `DATABASE_URL`), and the default (docs/config.md#precedence). A platform's
//! variables come after the file because they are not addressed to Agent OS: Railway, Render,
//! Fly and Heroku set them for whatever runs, and a laptop's shell often holds another
//! program's `DATABASE_URL`. What someone wrote for Agent OS wins over them, and `demo`, which
//! never runs hosted, does not read them at all.

use std::fmt;
use std::net::SocketAddr;

use agent_os_core::config::DEFAULT_BIND;
use agent_os_store::redact_url;

/// Where a setting's value came from, as `serve` tells it at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    ConfigFile,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) | Source::Env(name) => write!(f, "from {name}"),
            Source::ConfigFile => f.write_str("from config.yaml"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A setting's value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub value: String,
    pub source: Source,
}

impl Chosen {
    fn new(value: impl Into<String>, source: Source) -> Chosen {
        Chosen { value: value.into(), source }
    }
}

/// The environment as `serve` reads it: a lookup (an empty value counts as unset), and whether
/// the hosting platform's variables count (`serve`) or not (`demo`).
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    platform: bool,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>, platform: bool) -> Env<'a> {
        Env { lookup, platform }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// A hosting platform's variable: never for `demo`.
    fn platform(&self, name: &str) -> Option<String> {
        if self.platform { self.get(name) } else { None }
    }
}

/// The listen address: `--bind`, `bind` in config.yaml, `0.0.0.0:$PORT`, `127.0.0.1:7700`. A
/// `PORT` that loses to the flag or the file is reported in `notes`, since a platform that set
/// it will look for Agent OS there.
pub fn listen_address(
    flag: Option<&str>,
    config: Option<&str>,
    env: &Env,
    notes: &mut Vec<String>,
) -> Result<Chosen, String> {
    let named = match (flag, config) {
        (Some(f), _) => Some(Chosen::new(f, Source::Flag("--bind"))),
        (None, Some(c)) => Some(Chosen::new(c, Source::ConfigFile)),
        (None, None) => None,
    };
    let port = env.platform("PORT");
    if let Some(chosen) = named {
        if let Some(port) = port {
            notes.push(format!(
                "PORT={port} is set, but the listen address {} ({}) wins over it; a hosting platform that set PORT \
                 expects Agent OS on that port: remove {} to listen there",
                chosen.value,
                chosen.source,
                if chosen.source == Source::ConfigFile { "bind from config.yaml" } else { "--bind" },
            ));
        }
        return Ok(chosen);
    }
    if let Some(port) = port {
        return match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(Chosen::new(format!("0.0.0.0:{p}"), Source::Env("PORT"))),
            _ => Err(format!(
                "PORT {port:?} is not a port number (1 to 65535); a hosting platform sets it to the port it sends \
                 requests to: fix or unset it, or pass --bind ADDRESS:PORT"
            )),
        };
    }
    Ok(Chosen::new(DEFAULT_BIND, Source::Default))
}

/// Whether a URL names PostgreSQL, the one database a platform's `DATABASE_URL` may name here.
fn is_postgres(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The database: `--database-url`, `AGENT_OS_DATABASE_URL`, `database_url` in config.yaml,
/// `DATABASE_URL` when it names PostgreSQL, else `default` (the SQLite file in the home). A
/// `DATABASE_URL` that is not used is reported in `notes` (without its password).
pub fn database_url(
    flag: Option<&str>,
    config: Option<&str>,
    env: &Env,
    default: &str,
    notes: &mut Vec<String>,
) -> Chosen {
    let named = if let Some(f) = flag {
        Some(Chosen::new(f, Source::Flag("--database-url")))
    } else if let Some(v) = env.get("AGENT_OS_DATABASE_URL") {
        Some(Chosen::new(v, Source::Env("AGENT_OS_DATABASE_URL")))
    } else {
        config.map(|c| Chosen::new(c, Source::ConfigFile))
    };
    let platform = env.platform("DATABASE_URL");
    match (named, platform) {
        (Some(chosen), Some(p)) if is_postgres(&p) => {
            notes.push(format!(
                "DATABASE_URL is set, but the database named {} wins over it: using {}",
                chosen.source,
                redact_url(&chosen.value)
            ));
            chosen
        }
        (Some(chosen), _) => chosen,
        (None, Some(p)) if is_postgres(&p) => Chosen::new(p, Source::Env("DATABASE_URL")),
        (None, Some(p)) => {
            let scheme = p.split_once(':').map_or("", |(s, _)| s);
            notes.push(format!(
                "DATABASE_URL is set but is not a PostgreSQL URL (it starts with {scheme:?}, not postgres:// or \
                 postgresql://); Agent OS leaves it to whoever it is for and uses its own SQLite file"
            ));
            Chosen::new(default, Source::Default)
        }
        (None, None) => Chosen::new(default, Source::Default),
    }
}

/// The URL tasks reach Agent OS by: `--public-url`, `AGENT_OS_PUBLIC_URL`, `public_url` in
/// config.yaml (checked when the file was read), else `None`: the address it listens on.
pub fn public_url(flag: Option<&str>, config: Option<&str>, env: &Env) -> Result<Option<Chosen>, String> {
    let given = match flag {
        Some(f) => Some((f.to_string(), Source::Flag("--public-url"))),
        None => env.get("AGENT_OS_PUBLIC_URL").map(|v| (v, Source::Env("AGENT_OS_PUBLIC_URL"))),
    };
    if let Some((url, source)) = given {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            let name = match source {
                Source::Flag(_) => "--public-url",
                _ => "AGENT_OS_PUBLIC_URL",
            };
            return Err(format!(
                "{name} {url:?} is not an http(s) URL; give the address tasks and browsers reach Agent OS by, \
                 e.g. https://agent-os.example.com or http://127.0.0.1:7700"
            ));
        }
        return Ok(Some(Chosen::new(url.trim_end_matches('/'), source)));
    }
    Ok(config.map(|c| Chosen::new(c, Source::ConfigFile)))
}

/// The warning for a server other machines can reach without TLS: bound beyond loopback
/// while its public URL is not `https://`, so tokens, the dashboard password and session
/// cookies would cross the network in clear text. `None` when neither holds.
pub fn exposure_warning(addr: SocketAddr, public_url: &str) -> Option<String> {
    if addr.ip().to_canonical().is_loopback() || public_url.starts_with("https://") {
        return None;
    }
    let reach = if addr.ip().is_unspecified() { format!("every network interface ({addr})") } else { addr.to_string() };
    Some(format!(
        "Agent OS listens on {reach}, beyond this machine, and its public URL {public_url} is not https://: the API \
         and the dashboard, their tokens, password and session cookies travel unencrypted to anyone who can reach \
         the port. Put a TLS proxy in front (docs/deploy.md) and set AGENT_OS_PUBLIC_URL (or public_url in \
         config.yaml) to its https:// address, or listen on 127.0.0.1 only (--bind 127.0.0.1:7700)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    /// One row of a precedence table: the flag, the file, the environment, whether the
    /// platform's variables count (serve) or not (demo), and the value and source wanted.
    struct Case<'a> {
        flag: Option<&'a str>,
        file: Option<&'a str>,
        vars: &'a [(&'a str, &'a str)],
        platform: bool,
        want: &'a str,
        source: Source,
    }

    #[test]
    fn the_listen_address_is_the_flag_then_the_file_then_port_then_the_default() {
        let port: &[(&str, &str)] = &[("PORT", "8080")];
        let cases = [
            Case {
                flag: Some("127.0.0.1:9000"),
                file: Some("127.0.0.1:9001"),
                vars: port,
                platform: true,
                want: "127.0.0.1:9000",
                source: Source::Flag("--bind"),
            },
            Case {
                flag: None,
                file: Some("127.0.0.1:9001"),
                vars: port,
                platform: true,
                want: "127.0.0.1:9001",
                source: Source::ConfigFile,
            },
            Case {
                flag: None,
                file: None,
                vars: port,
                platform: true,
                want: "0.0.0.0:8080",
                source: Source::Env("PORT"),
            },
            Case { flag: None, file: None, vars: &[], platform: true, want: "127.0.0.1:7700", source: Source::Default },
            // demo does not read a platform's variables.
            Case {
                flag: None,
                file: None,
                vars: port,
                platform: false,
                want: "127.0.0.1:7700",
                source: Source::Default,
            },
            Case {
                flag: Some("127.0.0.1:0"),
                file: None,
                vars: &[],
                platform: true,
                want: "127.0.0.1:0",
                source: Source::Flag("--bind"),
            },
        ];
        for c in cases {
            let lookup = env(c.vars);
            let mut notes = Vec::new();
            let got = listen_address(c.flag, c.file, &Env::new(&lookup, c.platform), &mut notes).unwrap();
            assert_eq!(got, Chosen::new(c.want, c.source), "{:?} {:?} {}", c.flag, c.file, c.platform);
            // A PORT that loses is told; one that wins or is not read is not.
            let told = notes.iter().any(|n| n.contains("PORT=8080 is set"));
            assert_eq!(told, c.platform && !c.vars.is_empty() && c.source != Source::Env("PORT"), "{notes:?}");
        }
    }

    #[test]
    fn a_port_that_is_not_a_number_is_refused_with_what_to_do() {
        for bad in ["http", "0", "65536", "-1", "80 80"] {
            let vars = [("PORT", bad)];
            let lookup = env(&vars);
            let e = listen_address(None, None, &Env::new(&lookup, true), &mut Vec::new()).unwrap_err();
            assert!(e.contains(&format!("PORT {bad:?} is not a port number")) && e.contains("--bind"), "{e}");
            // …unless something wins over it.
            assert!(listen_address(Some("127.0.0.1:1"), None, &Env::new(&lookup, true), &mut Vec::new()).is_ok());
        }
        let empty = [("PORT", "")];
        let lookup = env(&empty);
        let got = listen_address(None, None, &Env::new(&lookup, true), &mut Vec::new()).unwrap();
        assert_eq!(got.source, Source::Default, "an empty PORT is unset");
    }

    #[test]
    fn the_database_is_the_flag_then_agent_os_s_variable_then_the_file_then_a_platform_s_postgresql() {
        let pg = "postgres://app:s3cret@db.internal:5432/railway";
        let sqlite = "sqlite:///data/agent-os.db";
        let all = [("AGENT_OS_DATABASE_URL", "postgres://aos@env/aos"), ("DATABASE_URL", pg)];
        let platform_only = [("DATABASE_URL", pg)];
        let cases = [
            Case {
                flag: Some("postgres://flag/x"),
                file: Some("postgres://file/x"),
                vars: &all,
                platform: true,
                want: "postgres://flag/x",
                source: Source::Flag("--database-url"),
            },
            Case {
                flag: None,
                file: Some("postgres://file/x"),
                vars: &all,
                platform: true,
                want: "postgres://aos@env/aos",
                source: Source::Env("AGENT_OS_DATABASE_URL"),
            },
            Case {
                flag: None,
                file: Some("postgres://file/x"),
                vars: &platform_only,
                platform: true,
                want: "postgres://file/x",
                source: Source::ConfigFile,
            },
            Case {
                flag: None,
                file: None,
                vars: &platform_only,
                platform: true,
                want: pg,
                source: Source::Env("DATABASE_URL"),
            },
            Case {
                flag: None,
                file: None,
                vars: &platform_only,
                platform: false,
                want: sqlite,
                source: Source::Default,
            },
            Case { flag: None, file: None, vars: &[], platform: true, want: sqlite, source: Source::Default },
        ];
        for c in cases {
            let lookup = env(c.vars);
            let mut notes = Vec::new();
            let got = database_url(c.flag, c.file, &Env::new(&lookup, c.platform), sqlite, &mut notes);
            assert_eq!(got, Chosen::new(c.want, c.source), "{:?} {:?} {:?}", c.flag, c.file, c.vars);
            // A platform's PostgreSQL that loses to something named for Agent OS is told.
            let told = notes.iter().any(|n| n.contains("DATABASE_URL is set, but"));
            let lost = c.platform
                && c.vars.iter().any(|(k, _)| *k == "DATABASE_URL")
                && c.source != Source::Env("DATABASE_URL")
                && c.source != Source::Default;
            assert_eq!(told, lost, "{notes:?}");
            assert!(notes.iter().all(|n| !n.contains("s3cret")), "{notes:?}");
        }
        let postgresql = [("DATABASE_URL", "postgresql://u@h/db")];
        let lookup = env(&postgresql);
        assert_eq!(
            database_url(None, None, &Env::new(&lookup, true), sqlite, &mut Vec::new()).source,
            Source::Env("DATABASE_URL")
        );
    }

    #[test]
    fn a_platform_database_url_that_is_not_postgresql_is_left_alone_and_said_so() {
        let vars = [("DATABASE_URL", "mysql://root:pw@localhost/shop")];
        let lookup = env(&vars);
        let mut notes = Vec::new();
        let got = database_url(None, None, &Env::new(&lookup, true), "sqlite:///h/agent-os.db", &mut notes);
        assert_eq!(got, Chosen::new("sqlite:///h/agent-os.db", Source::Default));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("\"mysql\"") && !notes[0].contains("pw"), "{}", notes[0]);
    }

    #[test]
    fn the_public_url_is_the_flag_then_agent_os_public_url_then_the_file() {
        let vars = [("AGENT_OS_PUBLIC_URL", "https://env.example.com/")];
        let lookup = env(&vars);
        let none = env(&[]);
        let e = Env::new(&lookup, true);
        let n = Env::new(&none, true);
        assert_eq!(
            public_url(Some("https://flag.example.com"), Some("https://file.example.com"), &e).unwrap(),
            Some(Chosen::new("https://flag.example.com", Source::Flag("--public-url")))
        );
        assert_eq!(
            public_url(None, Some("https://file.example.com"), &e).unwrap(),
            Some(Chosen::new("https://env.example.com", Source::Env("AGENT_OS_PUBLIC_URL"))),
            "the variable wins over the file, without its trailing /"
        );
        assert_eq!(
            public_url(None, Some("https://file.example.com"), &n).unwrap(),
            Some(Chosen::new("https://file.example.com", Source::ConfigFile))
        );
        assert_eq!(public_url(None, None, &n).unwrap(), None);
        // demo reads Agent OS's own variables too.
        let demo = Env::new(&lookup, false);
        assert_eq!(public_url(None, None, &demo).unwrap().unwrap().source, Source::Env("AGENT_OS_PUBLIC_URL"));
        let bad = [("AGENT_OS_PUBLIC_URL", "agent-os.example.com")];
        let lookup = env(&bad);
        let err = public_url(None, None, &Env::new(&lookup, true)).unwrap_err();
        assert!(err.starts_with("AGENT_OS_PUBLIC_URL \"agent-os.example.com\" is not an http(s) URL"), "{err}");
        let err = public_url(Some("ftp://x"), None, &n).unwrap_err();
        assert!(err.starts_with("--public-url \"ftp://x\""), "{err}");
    }

    #[test]
    fn only_a_server_reachable_from_elsewhere_without_https_is_warned_about() {
        let cases = [
            ("127.0.0.1:7700", "http://127.0.0.1:7700", false),
            ("[::1]:7700", "http://[::1]:7700", false),
            ("0.0.0.0:8080", "http://127.0.0.1:8080", true),
            ("0.0.0.0:8080", "https://aos.example.com", false),
            ("192.168.1.20:7700", "http://192.168.1.20:7700", true),
            ("[::]:7700", "http://aos.example.com", true),
        ];
        for (addr, url, warned) in cases {
            let w = exposure_warning(addr.parse().unwrap(), url);
            assert_eq!(w.is_some(), warned, "{addr} {url}");
            if let Some(w) = w {
                assert!(w.contains(url) && w.contains("AGENT_OS_PUBLIC_URL") && w.contains("127.0.0.1"), "{w}");
            }
        }
    }
}

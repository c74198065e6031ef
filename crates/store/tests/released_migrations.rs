//! Released migrations stay as they shipped: `migrations/released.sha256` lists every released
//! migration file of both backends with its sha256 (the `sha256sum` format, so
//! `sha256sum -c released.sha256` checks it from that directory too), and this test fails when
//! a listed file changed or is gone. A database already migrated keeps the old text's effect,
//! so a fix goes into a new migration. At a release, the new files are added to the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;

use sha2::{Digest, Sha256};

/// `(hash, path)` of each line of the list.
fn released() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let text = std::fs::read_to_string(dir.join("released.sha256")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (hash, path) =
                l.split_once("  ").unwrap_or_else(|| panic!("released.sha256: {l:?} is not `HASH  PATH`"));
            (hash.to_string(), path.to_string())
        })
        .collect()
}

#[test]
fn every_released_migration_is_unchanged_and_still_there() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let list = released();
    let mut problems = Vec::new();
    for (hash, path) in &list {
        match std::fs::read(dir.join(path)) {
            Ok(bytes) => {
                let now = hex(&Sha256::digest(&bytes));
                if &now != hash {
                    problems.push(format!(
                        "{path} was released with sha256 {hash} and is now {now}: a released migration is never \
                         edited; put it back as it was and make the change in a new migration file"
                    ));
                }
            }
            Err(_) => problems.push(format!(
                "{path} was released and is gone: a released migration is never removed; put it back, and undo \
                 what it did in a new migration file if need be"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_list_covers_both_backends_alike() {
    let list = released();
    let of = |backend: &str| -> Vec<String> {
        list.iter().filter_map(|(_, p)| p.strip_prefix(&format!("{backend}/")).map(str::to_string)).collect()
    };
    let sqlite = of("sqlite");
    assert!(sqlite.len() >= 15, "released.sha256 lists {} SQLite migrations", sqlite.len());
    assert_eq!(sqlite, of("postgres"), "each release ships the same migrations for both backends");
    assert_eq!(list.len(), sqlite.len() * 2, "released.sha256 names a file outside sqlite/ and postgres/");
    // What is listed is a prefix of the files there: releases add at the end.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    assert_eq!(files[..sqlite.len()], sqlite[..], "a new migration sorts after every released one");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! `agent-os dashboard password`: sets, changes or clears the password that logs in to the web
//! dashboard. The password is read from stdin (asked for twice, without echo, at a terminal),
//! never taken as an argument, so it stays out of shell history and process listings.

use std::io::{BufRead, IsTerminal};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;

#[derive(Subcommand)]
pub enum DashboardCmd {
    /// Set or change the dashboard password (read from stdin), or clear it with --clear. Every
    /// dashboard session that logged in with a password ends; token sessions stay.
    Password(PasswordArgs),
}

#[derive(Args)]
pub struct PasswordArgs {
    /// Forget the password: only the admin token logs in to the dashboard.
    #[arg(long)]
    pub clear: bool,
}

pub async fn run(c: &Client, cmd: &DashboardCmd) -> Result<u8> {
    let DashboardCmd::Password(a) = cmd;
    if a.clear {
        c.delete("/api/v1/dashboard/password").await?;
        println!("dashboard password cleared: only the admin token logs in; password sessions have ended");
        return Ok(0);
    }
    let password = if std::io::stdin().is_terminal() {
        let first = read_hidden("New dashboard password: ")?;
        let again = read_hidden("The same again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        strip_line_end(line)
    };
    if password.is_empty() {
        bail!("no password given on stdin; nothing changed (to remove the password, use --clear)");
    }
    let _: Value = c.call(Method::PUT, "/api/v1/dashboard/password", Some(&json!({ "password": password }))).await?;
    println!("dashboard password set; sessions that logged in with a password have ended");
    Ok(0)
}

fn strip_line_end(mut line: String) -> String {
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    line
}

/// Asks on stderr and reads one line from the terminal with echo off.
fn read_hidden(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    let fd = libc::STDIN_FILENO;
    let mut term = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the plain-data termios for stdin, a terminal here; it is read only
    // when the call succeeded.
    let saved = unsafe { (libc::tcgetattr(fd, term.as_mut_ptr()) == 0).then(|| term.assume_init()) };
    if let Some(s) = saved {
        let mut quiet = s;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: sets the attributes of stdin from a termios it returned, with echo turned off.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(s) = saved {
        // SAFETY: restores the attributes read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &s) };
    }
    read?;
    Ok(strip_line_end(line))
}

//! The dashboard's pages, sessions and safety, against a real server over HTTP.

mod common;

use common::*;

#[tokio::test]
async fn login_shows_the_overview_and_a_page_needs_a_session() {
    let s = start().await;
    let anon = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = anon.get(format!("{}/runs?status=failed", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fruns%3Fstatus%3Dfailed");
    let b = s.browser().await;
    let home = b.get("/").await;
    assert!(home.body.contains("No projects yet."), "{}", home.body);
    assert!(home.headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
}

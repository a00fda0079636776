//! The debug page in a real headless Chromium, driven over WebDriver by chromedriver, against a
//! real cluster: it lists every worker and the cache's namespaces, its figures move without a
//! reload, its pause and resume buttons act on the cluster, and the browser logs no error.
//! With a monitor token, it asks for the token and then does the same.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test fails and names the command that installs them.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster2_tests::{Cluster, SOON, TempPath, get};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: the debug page's browser test needs it; install with `{INSTALL}`"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Self { child, port };
        assert!(
            cluster2_tests::eventually(SOON, || std::net::TcpStream::connect((
                "127.0.0.1",
                driver.port
            ))
            .is_ok()),
            "chromedriver did not listen on port {port}"
        );
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's log of the browser's console (`goog:loggingPrefs` must ask for it).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

async fn browser(driver: &Driver, profile: &TempPath) -> Client {
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.as_str()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".to_owned(), json!({ "browser": "ALL" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with chromium")
}

/// Polls the page until `check` returns a value, or panics naming `what`.
async fn until<T>(
    client: &Client,
    what: &str,
    mut check: impl AsyncFnMut(&Client) -> Option<T>,
) -> T {
    let deadline = Instant::now() + SOON;
    loop {
        if let Some(value) = check(client).await {
            return value;
        }
        if Instant::now() > deadline {
            let text = match client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(e) => format!("(no body: {e})"),
            };
            panic!("the page never showed {what}; it shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

fn worker_state(monitor: SocketAddr, pid: u32) -> String {
    let workers: Value = serde_json::from_str(&get(monitor, "/workers").unwrap().body).unwrap();
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == pid)
        .map(|w| w["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Clicks the row's `action` button, then the dialog's Confirm.
async fn act(client: &Client, pid: u32, action: &str) {
    let button = format!("button[data-action='{action}'][data-pid='{pid}']");
    // The rows are redrawn on every state: a button found just before a redraw is gone by the
    // time of the click, so find and click again until a click lands.
    until(client, &format!("a {action} button for {pid}"), async |c| {
        c.find(Locator::Css(&button)).await.ok()?.click().await.ok()
    })
    .await;
    let confirm = client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("#confirm-ok"))
        .await
        .unwrap();
    confirm.click().await.unwrap();
}

/// Pauses `target` from the page and resumes it: each reaches the cluster (`state` reads the
/// worker's state from `/workers`), and the page shows the pause.
async fn pause_and_resume(client: &Client, target: u32, state: impl Fn() -> String) {
    act(client, target, "pause").await;
    assert!(
        cluster2_tests::eventually(SOON, || state() == "paused"),
        "the pause did not reach the cluster"
    );
    until(client, "the paused state", async |c| {
        let state = text_of(c, &format!("#workers tr[data-pid='{target}'] td.state")).await?;
        (state == "paused").then_some(())
    })
    .await;
    act(client, target, "resume").await;
    assert!(
        cluster2_tests::eventually(SOON, || state() == "listening"),
        "the resume did not reach the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_shows_the_cluster_live_and_acts_on_it() {
    let cluster = Cluster::start(APP, &["--workers=2", "--heartbeat-interval=200ms"], &[]);
    // A cache namespace for the page to list.
    assert_eq!(
        get(cluster.app, "/cache/set?ns=page-ns&key=k&value=v")
            .unwrap()
            .status,
        200
    );
    let driver = Driver::start();
    let profile = TempPath::new("chromium-profile");
    let client = browser(&driver, &profile).await;
    client
        .goto(&format!("http://{}/debug", cluster.monitor))
        .await
        .unwrap();

    // Every worker pid has its row, and the namespace is listed.
    let rows: Vec<u32> = until(&client, "a row per worker", async |c| {
        let rows = c.find_all(Locator::Css("#workers tbody tr")).await.ok()?;
        let mut pids = Vec::new();
        for row in rows {
            pids.push(row.attr("data-pid").await.ok()??.parse().ok()?);
        }
        (pids.len() == 2).then_some(pids)
    })
    .await;
    let mut expected = cluster.workers.clone();
    expected.sort_unstable();
    let mut shown = rows.clone();
    shown.sort_unstable();
    assert_eq!(shown, expected);
    until(&client, "the cache namespace", async |c| {
        text_of(c, "#caches tbody")
            .await?
            .contains("page-ns")
            .then_some(())
    })
    .await;

    // The rows show each worker's heartbeat (CPU in percent, memory in bytes), and every
    // status entry says which process answered.
    until(&client, "heartbeat figures in every row", async |c| {
        let rows = c.find_all(Locator::Css("#workers tbody tr")).await.ok()?;
        for row in rows {
            let text = row.text().await.ok()?;
            (text.contains(" %") && text.contains("iB")).then_some(())?;
        }
        Some(())
    })
    .await;
    until(&client, "the statuses by process", async |c| {
        let text = text_of(c, "#statuses").await?;
        (text.contains("master (pid ") && text.contains("worker 0 (pid ")).then_some(())
    })
    .await;

    // The figures move without a reload.
    let before = until(&client, "a request count", async |c| {
        let t = text_of(c, "#t-requests").await?;
        t.replace(',', "").parse::<u64>().ok()
    })
    .await;
    for _ in 0..40 {
        get(cluster.app, "/").unwrap();
    }
    let after = until(&client, "the request count grow", async |c| {
        let n: u64 = text_of(c, "#t-requests")
            .await?
            .replace(',', "")
            .parse()
            .ok()?;
        (n >= before + 40).then_some(n)
    })
    .await;
    assert!(after >= before + 40);

    // Pause from the page: the cluster says paused; resume undoes it; the page follows.
    let target = cluster.workers[0];
    pause_and_resume(&client, target, || worker_state(cluster.monitor, target)).await;
    // The timeline shows both, from the lifecycle stream.
    until(&client, "paused and resumed in the timeline", async |c| {
        let paused = c
            .find(Locator::Css("#timeline li[data-event='paused']"))
            .await;
        let resumed = c
            .find(Locator::Css("#timeline li[data-event='resumed']"))
            .await;
        (paused.is_ok() && resumed.is_ok()).then_some(())
    })
    .await;

    // Debug one worker: open it, set its filter to debug, and see a debug line it logs.
    let open = format!("#workers tr[data-pid='{target}'] td.pid button");
    until(&client, "the worker's pid to click", async |c| {
        c.find(Locator::Css(&open)).await.ok()?.click().await.ok()
    })
    .await;
    let filter = client.find(Locator::Css("#d-filter")).await.unwrap();
    filter.send_keys("debug").await.unwrap();
    client
        .find(Locator::Css("#d-set-filter"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        cluster2_tests::eventually(SOON, || {
            let workers: Value =
                serde_json::from_str(&get(cluster.monitor, "/workers").unwrap().body).unwrap();
            workers["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["pid"] == target && w["log_filter"] == "debug")
        }),
        "the filter did not reach worker {target}"
    );
    // Until the chosen worker answers one, ask for a debug line with a marker.
    let marker = "page-debug-marker";
    assert!(
        (0..2000).any(
            |_| get(cluster.app, &format!("/log?level=debug&msg={marker}"))
                .unwrap()
                .body
                == target.to_string()
        ),
        "worker {target} never took a /log request"
    );
    until(
        &client,
        "the worker's debug line in the log panel",
        async |c| text_of(c, "#d-logs").await?.contains(marker).then_some(()),
    )
    .await;

    // A picture of the page at work, for people (committed as docs/debug-page.png when asked).
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let target_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::write(target_dir.join("debug-page.png"), &png).unwrap();
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::write(docs.join("debug-page.png"), &png).unwrap();
    }

    // Debug a new worker from the page: its log panel opens on it and shows its start-up from
    // the first line; released, it serves in the place of another.
    until(&client, "the debug-new button", async |c| {
        c.find(Locator::Css("#a-debug-new"))
            .await
            .ok()?
            .click()
            .await
            .ok()
    })
    .await;
    client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let held: u32 = until(&client, "the new debug worker's panel", async |c| {
        let pid: u32 = text_of(c, "#d-pid").await?.parse().ok()?;
        (!cluster.workers.contains(&pid)).then_some(pid)
    })
    .await;
    until(&client, "the debug worker's first lines", async |c| {
        let logs = text_of(c, "#d-logs").await?;
        (logs.contains("held out of traffic") && logs.contains("configure_app started"))
            .then_some(())
    })
    .await;
    assert!(
        cluster2_tests::eventually(SOON, || worker_state(cluster.monitor, held) == "paused"),
        "the debug worker is not held"
    );
    act(&client, held, "release").await;
    assert!(
        cluster2_tests::eventually(SOON, || worker_state(cluster.monitor, held) == "listening"),
        "the release did not reach the cluster"
    );

    // No error in the browser's console.
    let log = client.issue_cmd(BrowserLog).await.unwrap();
    let errors: Vec<&Value> = log
        .as_array()
        .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    client.close().await.unwrap();
}

/// With `mon.token`, the page opens without it (a browser cannot send it on a navigation),
/// asks for it, and then shows the cluster and acts on it, sending it with every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_asks_for_the_token_and_uses_it() {
    const TOKEN: &str = "page-token-0123456789";
    let token_flag = format!("--mon.token={TOKEN}");
    let cluster = Cluster::start(APP, &["--workers=1", &token_flag], &[]);
    let target = cluster.workers[0];
    let state = || {
        let raw = format!(
            "GET /workers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\n\r\n"
        );
        let workers: Value =
            serde_json::from_str(&cluster2_tests::request(cluster.monitor, &raw).unwrap().body)
                .unwrap();
        workers["workers"][0]["state"].as_str().unwrap().to_owned()
    };
    let driver = Driver::start();
    let profile = TempPath::new("chromium-profile-token");
    let client = browser(&driver, &profile).await;
    client
        .goto(&format!("http://{}/debug", cluster.monitor))
        .await
        .unwrap();

    let input = client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("dialog#token[open] #token-input"))
        .await
        .expect("the page asks for the token");
    input.send_keys(TOKEN).await.unwrap();
    client
        .find(Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    until(&client, "the worker's row", async |c| {
        c.find(Locator::Css(&format!("#workers tr[data-pid='{target}']")))
            .await
            .ok()
            .map(drop)
    })
    .await;
    pause_and_resume(&client, target, state).await;
    client.close().await.unwrap();
}

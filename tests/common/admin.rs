//! A test server with the admin API (`[[listen.http]]` serving `api`, `[admin] token`), and a small
//! HTTP client for it.

use std::time::Duration;

use super::Server;

/// The token of [`start`]'s servers.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A server with users `users` (on localhost), `shards` shards, the admin API (and `/ws-xmpp`) on
/// its own port
/// (`[admin]` only when `with_admin`) and `extra` config at the end.
pub fn start(shards: usize, users: &[&str], with_admin: bool, extra: &str) -> (Server, u16) {
    let admin = if with_admin {
        format!("[admin]\ntoken = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    Server::start_http(
        shards,
        users,
        "tls = \"none\"\nhandlers = [\"api\", \"websocket\"]",
        &format!("{extra}\n{admin}"),
    )
}

/// One answer: status, headers we look at, body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub allow: Option<String>,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// `method path` on the API at `port` with `token` (None: no Authorization) and `body`.
pub fn call(
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                agent.get(&url)
            } else {
                agent.delete(&url)
            };
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = match method {
                "PUT" => agent.put(&url),
                "PATCH" => agent.patch(&url),
                _ => agent.post(&url),
            };
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.header("content-type", "application/json")
                .send(body.unwrap_or("").as_bytes())
        }
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (www_authenticate, allow) = (header("www-authenticate"), header("allow"));
    Answer {
        status: resp.status().as_u16(),
        www_authenticate,
        allow,
        body: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// `call` with the right token.
pub fn api(port: u16, method: &str, path: &str, body: Option<&str>) -> Answer {
    call(port, Some(TOKEN), method, path, body)
}

/// Creates the account `name@localhost` with the test password over the API (`201 Created`).
pub fn add_user(port: u16, name: &str) {
    let body = format!(
        r#"{{"jid":"{name}@localhost","password":"{}"}}"#,
        super::PASSWORD
    );
    let r = api(port, "POST", "/api/users", Some(&body));
    assert_eq!(r.status, 201, "{name}: {}", r.body);
}

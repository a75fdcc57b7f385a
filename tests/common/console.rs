//! A browser-less client of the operator console: keeps the session cookie,
//! reads the CSRF token out of the pages, follows no redirects (the tests
//! look at them).

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    /// The `Set-Cookie` header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The first CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let at = self.text.find(marker).expect("a form with a CSRF token") + marker.len();
        self.text[at..].split('"').next().unwrap_or("").to_owned()
    }
}

/// A console client.
pub struct Console {
    pub base: String,
    client: reqwest::Client,
    /// `name=value` cookies sent with every request.
    pub cookies: Vec<String>,
}

/// The value of a `Set-Cookie` header's cookie.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_owned()
}

impl Console {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    async fn answer(r: reqwest::RequestBuilder) -> Page {
        let resp = r.send().await.unwrap();
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }

    fn with_cookies(&self, mut r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if !self.cookies.is_empty() {
            r = r.header(COOKIE, self.cookies.join("; "));
        }
        r
    }

    pub async fn get(&self, path: &str) -> Page {
        self.get_with(path, &[]).await
    }

    /// GETs `path` with extra `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut r = self.client.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::answer(self.with_cookies(r)).await
    }

    /// POSTs `fields` as a form, with extra `headers`.
    pub async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::answer(self.with_cookies(r)).await
    }

    /// [`Self::post`] with owned fields.
    pub async fn post_owned(&self, path: &str, fields: Vec<(String, String)>) -> Page {
        let f: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post(path, &f, &[]).await
    }

    /// Signs in with `token`; panics unless the console lets it in.
    pub async fn sign_in(addr: std::net::SocketAddr, token: &str) -> Self {
        let mut c = Self::new(addr);
        let login = c.get("/ui/login").await;
        let nonce = login.csrf();
        c.cookies = vec![cookie_pair(&login.set_cookie("sagaflow_login").unwrap())];
        let done = c
            .post("/ui/login", &[("csrf", &nonce), ("token", token)], &[])
            .await;
        assert_eq!(done.status, 303, "{}", done.text);
        c.cookies = vec![cookie_pair(&done.set_cookie("sagaflow_session").unwrap())];
        c
    }

    /// The CSRF token of the session (read from the runs page).
    pub async fn csrf(&self) -> String {
        self.get("/ui/runs").await.csrf()
    }
}
